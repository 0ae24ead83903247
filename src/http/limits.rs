//! Request size limits, with gunicorn's names and defaults.
//!
//! hyper parses the head within a bounded buffer ([`Limits::head_buffer`]) and
//! counts fields itself (431 beyond the count); the per-line limits are
//! checked on the parsed head ([`Limits::check_head`]), and the body limit on
//! `Content-Length` before the body is read (chunked bodies are counted as they
//! arrive, by `wsgi.input`). A limit of 0 means unlimited, as in gunicorn.

use http::StatusCode;

use super::RequestHead;

/// The request limits (`--limit-request-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of the request line (`--limit-request-line`), 414 beyond.
    /// Default is 4094.
    pub request_line: usize,
    /// Number of header fields (`--limit-request-fields`), 431 beyond.
    /// Default is 100.
    pub fields: usize,
    /// Bytes of one field line, `name: value` (`--limit-request-field-size`),
    /// 431 beyond. Default is 8190.
    pub field_size: usize,
    /// Bytes of the message body (`--limit-request-body`), 413 beyond.
    /// Default is 1 GiB.
    pub body: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            request_line: 4094,
            fields: 100,
            field_size: 8190,
            body: 1 << 30,
        }
    }
}

/// A request refused by a limit: the status to send and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitError {
    /// 413, 414 or 431.
    pub status: StatusCode,
    /// A one-line explanation naming the option.
    pub message: String,
}

impl Limits {
    /// Field count for hyper's parser (it answers 431 beyond it).
    pub fn hyper_max_headers(&self) -> usize {
        if self.fields == 0 {
            32_768
        } else {
            self.fields
        }
    }

    /// Bytes hyper may buffer for one request head: room for the longest
    /// request line and every field at its longest, at least hyper's minimum.
    pub fn head_buffer(&self) -> usize {
        let line = if self.request_line == 0 {
            64 * 1024
        } else {
            self.request_line
        };
        let field = if self.field_size == 0 {
            64 * 1024
        } else {
            self.field_size
        };
        let fields = self.hyper_max_headers().min(1024);
        (line + 2 + fields * (field + 2) + 2).clamp(16 * 1024, 16 * 1024 * 1024)
    }

    /// Check a parsed request head against the line and field limits; each
    /// field line's size only if `field_sizes` (a caller that measured the
    /// raw lines already passes false).
    ///
    /// # Errors
    ///
    /// A [`LimitError`] with 414 (request line) or 431 (a field line).
    pub fn check_head(&self, head: &RequestHead, field_sizes: bool) -> Result<(), LimitError> {
        if self.request_line > 0 {
            // The request-target as sent: the whole URI in absolute-form.
            let target = match head.uri.scheme() {
                Some(_) => head.uri.to_string().len(),
                None => head
                    .uri
                    .path_and_query()
                    .map_or_else(|| head.uri.to_string().len(), |p| p.as_str().len()),
            };
            // METHOD SP request-target SP HTTP/1.1
            let line = head.method.as_str().len() + 1 + target + 1 + 8;
            if line > self.request_line {
                return Err(LimitError {
                    status: StatusCode::URI_TOO_LONG,
                    message: format!(
                        "request line of {line} bytes is over --limit-request-line {}",
                        self.request_line
                    ),
                });
            }
        }
        if self.fields > 0 && head.field_count() > self.fields {
            return Err(LimitError {
                status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                message: format!(
                    "{} header fields are over --limit-request-fields {}",
                    head.field_count(),
                    self.fields
                ),
            });
        }
        if field_sizes && self.field_size > 0 {
            for (name, value) in head.fields() {
                // The field line as gunicorn counts it: `name: value` and its CRLF.
                let size = name.len() + 2 + value.len() + 2;
                if size > self.field_size {
                    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
                    return Err(LimitError {
                        status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                        message: format!(
                            "field {name} of {size} bytes is over --limit-request-field-size {}",
                            self.field_size
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Check a declared `Content-Length` against the body limit.
    ///
    /// # Errors
    ///
    /// A [`LimitError`] with 413.
    pub fn check_body_length(&self, length: u64) -> Result<(), LimitError> {
        if self.body > 0 && length > self.body {
            return Err(self.body_error(length));
        }
        Ok(())
    }

    /// The 413 for a body of (at least) `length` bytes.
    pub fn body_error(&self, length: u64) -> LimitError {
        LimitError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!(
                "request body of {length} bytes is over --limit-request-body {}",
                self.body
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(target: &str, headers: &[(&str, String)]) -> RequestHead {
        let mut builder = http::Request::builder().uri(target);
        for (name, value) in headers {
            builder = builder.header(*name, value.as_str());
        }
        RequestHead::from_parts(builder.body(()).unwrap().into_parts().0)
    }

    #[test]
    fn request_line() {
        let limits = Limits {
            request_line: 30,
            ..Limits::default()
        };
        // "GET " + 17 + " HTTP/1.1" = 30
        assert!(limits
            .check_head(&parts("/aaaaaaaaaaaaaaaa", &[]), true)
            .is_ok());
        let err = limits
            .check_head(&parts("/aaaaaaaaaaaaaaaaa", &[]), true)
            .unwrap_err();
        assert_eq!(err.status, StatusCode::URI_TOO_LONG);
        assert!(err.message.contains("--limit-request-line 30"));
        let unlimited = Limits {
            request_line: 0,
            ..Limits::default()
        };
        assert!(unlimited
            .check_head(&parts(&format!("/{}", "a".repeat(9000)), &[]), true)
            .is_ok());
    }

    #[test]
    fn fields() {
        let limits = Limits {
            fields: 2,
            field_size: 20,
            ..Limits::default()
        };
        let two = [("a", "1".to_owned()), ("b", "2".to_owned())];
        assert!(limits.check_head(&parts("/", &two), true).is_ok());
        let three = [
            ("a", "1".to_owned()),
            ("b", "2".to_owned()),
            ("c", "3".to_owned()),
        ];
        assert_eq!(
            limits
                .check_head(&parts("/", &three), true)
                .unwrap_err()
                .status,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        // "x-long: " is 8 bytes and CRLF 2; 10 more is exactly 20.
        assert!(limits
            .check_head(&parts("/", &[("x-long", "a".repeat(10))]), true)
            .is_ok());
        let err = limits
            .check_head(&parts("/", &[("x-long", "a".repeat(11))]), true)
            .unwrap_err();
        // A caller that measured the raw field lines already skips them.
        assert!(limits
            .check_head(&parts("/", &[("x-long", "a".repeat(11))]), false)
            .is_ok());
        assert!(
            err.message.contains("x-long") && err.message.contains("21 bytes"),
            "{}",
            err.message
        );
    }

    #[test]
    fn body() {
        let limits = Limits {
            body: 10,
            ..Limits::default()
        };
        assert!(limits.check_body_length(10).is_ok());
        assert_eq!(
            limits.check_body_length(11).unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert!(Limits { body: 0, ..limits }
            .check_body_length(u64::MAX)
            .is_ok());
    }

    #[test]
    fn head_buffer_is_bounded() {
        assert!(Limits::default().head_buffer() >= 4094 + 100 * 8192);
        let huge = Limits {
            request_line: 0,
            fields: 0,
            field_size: 0,
            body: 0,
        };
        assert_eq!(huge.head_buffer(), 16 * 1024 * 1024);
    }
}
