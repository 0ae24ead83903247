//! A request head as the application side reads it: method, request-target,
//! version and field lines (RFC 9112 §2.1, §3, §5).
//!
//! A head hyper parsed keeps hyper's `HeaderMap`; a head ferrule's own
//! exchange parsed ([`super::h1`]) keeps its bytes and where each field line
//! lies in them, so no map is built, filled and dropped per request. Readers
//! see one shape either way: field names as bytes, compared without regard to
//! case (RFC 9110 §5.1), values as bytes (latin-1 for the environ, PEP 3333
//! §"Unicode Issues"), in the order they were sent.

use std::borrow::Cow;
use std::mem::{ManuallyDrop, MaybeUninit};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Uri, Version};

/// Offsets of one field line's name and value in a raw head's bytes:
/// `(start, length)` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FieldSpan {
    pub name: (usize, usize),
    pub value: (usize, usize),
}

/// A request's method, request-target, version and fields.
#[derive(Debug)]
pub struct RequestHead {
    /// The method, e.g. `GET`.
    pub method: Method,
    /// The request-target (origin-form `/path?query`, or absolute-form).
    pub uri: Uri,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: Version,
    fields: Fields,
}

#[derive(Debug)]
enum Fields {
    /// hyper's map: names lower-cased, the values of one name together.
    Map(HeaderMap),
    /// The exchange's: the head's bytes and its field lines, as sent.
    Raw { bytes: Bytes, spans: Spans },
}

/// A raw head's field spans, in a `Vec` that goes back to its thread's
/// spares when the head is dropped ([`SPARE_SPANS`]).
#[derive(Debug)]
struct Spans(Vec<FieldSpan>);

/// Most spare span lists a thread keeps: a turn of the event loop holds up
/// to 64 requests (`crate::http::turn`), and pipelined ones come on top.
const SPARE_SPANS_MAX: usize = 128;

/// Spans a spare list may hold and still be kept: a head with more fields
/// gives its list back to the allocator.
const SPARE_SPANS_CAPACITY: usize = 32;

thread_local! {
    /// Emptied span lists of dropped heads. Each request's head took a
    /// fresh allocation of 32 bytes per field and freed it a turn later, in
    /// batches of up to 64: past glibc's per-size cache of 7, the frees went
    /// to its fast bins, which its next large allocation (a 4 KiB body's
    /// `bytes`) then had to consolidate. Reusing the lists took callgrind's
    /// `hello` from 11,483 to 11,232 instructions per request and `echo`
    /// from 20,222 to 19,895.
    static SPARE_SPANS: std::cell::RefCell<Vec<Vec<FieldSpan>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl Spans {
    /// A copy of `spans` in a spare list, or a new one.
    fn copy_of(spans: &[FieldSpan]) -> Spans {
        let spare = SPARE_SPANS
            .try_with(|spare| spare.borrow_mut().pop())
            .ok()
            .flatten();
        let mut list = spare.unwrap_or_default();
        list.extend_from_slice(spans);
        Spans(list)
    }
}

impl Drop for Spans {
    fn drop(&mut self) {
        if self.0.capacity() > SPARE_SPANS_CAPACITY {
            return;
        }
        let mut list = std::mem::take(&mut self.0);
        list.clear();
        // A thread being torn down has no spares left: the list is freed.
        let _ = SPARE_SPANS.try_with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < SPARE_SPANS_MAX {
                spare.push(list);
            }
        });
    }
}

/// Most spare head boxes a thread keeps (as [`SPARE_SPANS_MAX`]).
const SPARE_HEADS_MAX: usize = 128;

thread_local! {
    /// The allocations of dropped [`HeadBox`]es, their heads dropped. A box
    /// of 216 bytes was the last allocation ferrule's side made per request,
    /// freed a turn later in batches of up to 64 like the span lists: past
    /// glibc's per-size cache, each `malloc` and `free` took its slower
    /// paths (about 240 instructions a request between them).
    // The boxes are the point: each is an allocation to hand out again.
    #[allow(clippy::vec_box)]
    static SPARE_HEADS: std::cell::RefCell<Vec<Box<MaybeUninit<RequestHead>>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A [`RequestHead`] on the heap, in the allocation of one dropped earlier on
/// the same thread when there is one (at most 128 are kept per thread): a
/// [`super::Job`] holds its head this way, so moving a job moves a pointer,
/// not the 216-byte head.
///
/// Dropping it drops the head at once (its bytes, which may be a
/// connection's read buffer, are not held), then keeps the empty allocation.
pub struct HeadBox(ManuallyDrop<Box<RequestHead>>);

impl HeadBox {
    /// `head`, moved into a spare allocation or a new one.
    pub fn new(head: RequestHead) -> HeadBox {
        let spare = SPARE_HEADS
            .try_with(|spare| spare.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_else(|| Box::new(MaybeUninit::uninit()));
        let at = Box::into_raw(spare).cast::<RequestHead>();
        // SAFETY: `at` is a live allocation with the layout of a
        // `RequestHead` (`MaybeUninit<T>` has `T`'s), now initialised, so
        // the box owns a valid head.
        unsafe {
            at.write(head);
            HeadBox(ManuallyDrop::new(Box::from_raw(at)))
        }
    }
}

impl Drop for HeadBox {
    fn drop(&mut self) {
        // SAFETY: the box is taken once, here, and `self` is not used again.
        let at = Box::into_raw(unsafe { ManuallyDrop::take(&mut self.0) });
        // SAFETY: `at` owns a valid head; once it is dropped the allocation
        // holds an uninitialised `RequestHead`, which a
        // `Box<MaybeUninit<RequestHead>>` may own and free.
        let spare = unsafe {
            std::ptr::drop_in_place(at);
            Box::from_raw(at.cast::<MaybeUninit<RequestHead>>())
        };
        // A thread being torn down has no spares left: the box is freed.
        let _ = SPARE_HEADS.try_with(|spares| {
            let mut spares = spares.borrow_mut();
            if spares.len() < SPARE_HEADS_MAX {
                spares.push(spare);
            }
        });
    }
}

impl std::ops::Deref for HeadBox {
    type Target = RequestHead;

    fn deref(&self) -> &RequestHead {
        &self.0
    }
}

impl std::ops::DerefMut for HeadBox {
    fn deref_mut(&mut self) -> &mut RequestHead {
        &mut self.0
    }
}

impl std::fmt::Debug for HeadBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        RequestHead::fmt(self, f)
    }
}

impl RequestHead {
    /// The head hyper parsed (its extensions are not kept).
    pub fn from_parts(parts: http::request::Parts) -> RequestHead {
        RequestHead {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            fields: Fields::Map(parts.headers),
        }
    }

    /// A head read from `bytes`, whose field lines lie at `spans` (copied);
    /// httparse checked every name is a token and every value field-content,
    /// and the exchange that no name is longer than the http crate's
    /// `HeaderName` holds (65,535 bytes), so each is a valid `HeaderName` and
    /// `HeaderValue`.
    pub(crate) fn raw(
        method: Method,
        uri: Uri,
        version: Version,
        bytes: Bytes,
        spans: &[FieldSpan],
    ) -> RequestHead {
        RequestHead {
            method,
            uri,
            version,
            fields: Fields::Raw {
                bytes,
                spans: Spans::copy_of(spans),
            },
        }
    }

    /// How many field lines the head has.
    pub fn field_count(&self) -> usize {
        match &self.fields {
            Fields::Map(map) => map.len(),
            Fields::Raw { spans, .. } => spans.0.len(),
        }
    }

    /// Every field line as `(name, value)`: in the order sent for a raw
    /// head, grouped by name (first appearance first) for hyper's; names
    /// lower-cased for hyper's, as sent for a raw head.
    pub fn fields(&self) -> FieldIter<'_> {
        FieldIter(match &self.fields {
            Fields::Map(map) => Lines::Map(map.iter()),
            Fields::Raw { bytes, spans } => Lines::Raw(bytes, spans.0.iter()),
        })
    }

    /// The values of the fields named `name` (any case), in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value)
    }

    /// Whether a field named `name` (any case) is present.
    pub fn contains(&self, name: &str) -> bool {
        self.values(name).next().is_some()
    }

    /// The fields as a `HeaderMap` (built for a raw head: for the access
    /// log, not the request path). A raw field the `http` crate refuses is
    /// left out.
    pub fn header_map(&self) -> Cow<'_, HeaderMap> {
        match &self.fields {
            Fields::Map(map) => Cow::Borrowed(map),
            Fields::Raw { .. } => {
                let mut map = HeaderMap::with_capacity(self.field_count());
                for (name, value) in self.fields() {
                    if let (Ok(name), Ok(value)) =
                        (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
                    {
                        map.append(name, value);
                    }
                }
                Cow::Owned(map)
            }
        }
    }
}

#[cfg(test)]
impl RequestHead {
    /// A raw `GET` head of `target` and `fields`, as the exchange makes one.
    pub(crate) fn from_lines(target: &str, fields: &[(&str, &[u8])]) -> RequestHead {
        let mut text = Vec::new();
        let mut spans = Vec::new();
        for (name, value) in fields {
            let name_at = text.len();
            text.extend_from_slice(name.as_bytes());
            text.extend_from_slice(b": ");
            let value_at = text.len();
            text.extend_from_slice(value);
            text.extend_from_slice(b"\r\n");
            spans.push(FieldSpan {
                name: (name_at, name.len()),
                value: (value_at, value.len()),
            });
        }
        let uri = target.parse().expect("a valid request-target");
        RequestHead::raw(
            Method::GET,
            uri,
            Version::HTTP_11,
            Bytes::from(text),
            &spans,
        )
    }
}

impl From<http::request::Parts> for RequestHead {
    fn from(parts: http::request::Parts) -> RequestHead {
        RequestHead::from_parts(parts)
    }
}

/// Whether the field name `name` is `lower` in any case (RFC 9110 §5.1:
/// field names are case-insensitive).
///
/// `name` must be a token (RFC 9110 §5.6.2), as every name of a parsed head
/// is (httparse and the http crate refuse any other), and `lower` a
/// lowercase name of letters, digits and `-`. For those, setting bit 0x20 of
/// a byte of `name` lowercases a letter, leaves a digit or `-` as it is, and
/// turns no other token byte into one of them; so up to eight bytes compare
/// at a time, where `eq_ignore_ascii_case` lowercases both sides byte by
/// byte.
#[inline]
pub(crate) fn name_is(name: &[u8], lower: &[u8]) -> bool {
    debug_assert!(lower
        .iter()
        .all(|&b| b == b'-' || b.is_ascii_digit() || b.is_ascii_lowercase()));
    let n = name.len();
    if n != lower.len() {
        return false;
    }
    // Words that overlap where `n` is not a multiple of their size.
    let words = |size: usize, word: fn(&[u8], usize) -> u64, case: u64| {
        (0..n - size)
            .step_by(size)
            .chain([n - size])
            .all(|at| word(name, at) | case == word(lower, at))
    };
    match n {
        8.. => words(
            8,
            |s, at| u64::from_le_bytes(word_at(s, at)),
            0x2020_2020_2020_2020,
        ),
        4.. => words(
            4,
            |s, at| u64::from(u32::from_le_bytes(word_at(s, at))),
            0x2020_2020,
        ),
        _ => name.iter().zip(lower).all(|(&a, &b)| a | 0x20 == b),
    }
}

/// The `N` bytes of `bytes` from `at`.
#[inline]
fn word_at<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    bytes[at..at + N].try_into().expect("N bytes")
}

/// The field lines of a [`RequestHead`], as `(name, value)` bytes.
#[derive(Debug)]
pub struct FieldIter<'a>(Lines<'a>);

#[derive(Debug)]
enum Lines<'a> {
    Map(http::header::Iter<'a, HeaderValue>),
    Raw(&'a Bytes, std::slice::Iter<'a, FieldSpan>),
}

impl<'a> Iterator for FieldIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            Lines::Map(iter) => iter
                .next()
                .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes())),
            Lines::Raw(bytes, iter) => iter.next().map(|span| {
                let at = |(start, len): (usize, usize)| &bytes[start..start + len];
                (at(span.name), at(span.value))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same request as hyper's parts and as a raw head.
    fn both(fields: &[(&str, &str)]) -> (RequestHead, RequestHead) {
        let mut builder = http::Request::builder().uri("/p?q");
        for (name, value) in fields {
            builder = builder.header(*name, *value);
        }
        let map = RequestHead::from_parts(builder.body(()).unwrap().into_parts().0);
        let fields: Vec<(&str, &[u8])> = fields.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
        (map, RequestHead::from_lines("/p?q", &fields))
    }

    /// The address of a raw head's span list.
    fn spans_at(head: &RequestHead) -> *const FieldSpan {
        match &head.fields {
            Fields::Raw { spans, .. } => spans.0.as_ptr(),
            Fields::Map(_) => panic!("not a raw head"),
        }
    }

    #[test]
    fn a_dropped_heads_span_list_is_the_next_heads_on_its_thread() {
        // On a thread of its own: no other test's heads among its spares.
        std::thread::spawn(|| {
            let first = RequestHead::from_lines("/a", &[("Host", b"a"), ("X-One", b"1")]);
            let list = spans_at(&first);
            drop(first);
            let second = RequestHead::from_lines("/b", &[("Host", b"b")]);
            assert_eq!(spans_at(&second), list, "the spare list was reused");
            let fields: Vec<_> = second.fields().collect();
            assert_eq!(
                fields,
                [(&b"Host"[..], &b"b"[..])],
                "and holds only its own"
            );
            // A list grown past SPARE_SPANS_CAPACITY goes back to the allocator.
            let many: Vec<(String, &[u8])> = (0..=SPARE_SPANS_CAPACITY)
                .map(|i| (format!("X-{i}"), &b"v"[..]))
                .collect();
            let many: Vec<(&str, &[u8])> = many.iter().map(|(n, v)| (n.as_str(), *v)).collect();
            let spares = || SPARE_SPANS.with(|spare| spare.borrow().len());
            drop(second);
            assert_eq!(spares(), 1);
            let large = RequestHead::from_lines("/c", &many);
            assert_eq!(large.field_count(), SPARE_SPANS_CAPACITY + 1);
            assert_eq!(spares(), 0, "it took the spare list, and grew it");
            drop(large);
            assert_eq!(spares(), 0, "a list past the capacity is not kept");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_dropped_head_box_is_the_next_ones_allocation_and_holds_nothing() {
        std::thread::spawn(|| {
            let raw = |bytes: Bytes| {
                RequestHead::raw(
                    Method::GET,
                    Uri::from_static("/"),
                    Version::HTTP_11,
                    bytes,
                    &[],
                )
            };
            let first_bytes = Bytes::from(b"GET / HTTP/1.1\r\n\r\n".to_vec());
            let first = HeadBox::new(raw(first_bytes.clone()));
            let at: *const RequestHead = &*first;
            assert!(!first_bytes.is_unique());
            drop(first);
            assert!(first_bytes.is_unique(), "the head's bytes went with it");
            let second = HeadBox::new(RequestHead::from_lines("/b", &[("Host", b"b")]));
            assert_eq!(
                &*second as *const RequestHead, at,
                "the allocation was reused"
            );
            assert_eq!(second.uri, "/b");
            assert_eq!(
                second.fields().collect::<Vec<_>>(),
                [(&b"Host"[..], &b"b"[..])]
            );
            // At most SPARE_HEADS_MAX are kept.
            let spares = || SPARE_HEADS.with(|spares| spares.borrow().len());
            let many: Vec<HeadBox> = (0..SPARE_HEADS_MAX + 5)
                .map(|_| HeadBox::new(raw(Bytes::new())))
                .collect();
            assert_eq!(spares(), 0);
            drop(many);
            drop(second);
            assert_eq!(spares(), SPARE_HEADS_MAX);
        })
        .join()
        .unwrap();
    }

    /// The bytes RFC 9110 §5.6.2 allows in a token.
    fn token_bytes() -> Vec<u8> {
        (0..=255u8)
            .filter(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
            .collect()
    }

    #[test]
    fn name_is_agrees_with_eq_ignore_ascii_case_for_every_token_byte_anywhere() {
        let names: [&[u8]; 8] = [
            b"te",
            b"dnt",
            b"host",
            b"range",
            b"expect",
            b"content-type",
            b"content-length",
            b"upgrade-insecure-requests",
        ];
        let mut compared = 0;
        for lower in names {
            assert!(name_is(lower, lower));
            assert!(name_is(&lower.to_ascii_uppercase(), lower));
            assert!(!name_is(&lower[1..], lower), "{lower:?}: shorter");
            let mut longer = lower.to_vec();
            longer.push(b'x');
            assert!(!name_is(&longer, lower), "{lower:?}: longer");
            // Every token byte at every position, from both cases of the name.
            for base in [lower.to_vec(), lower.to_ascii_uppercase()] {
                for at in 0..base.len() {
                    for &b in &token_bytes() {
                        let mut name = base.clone();
                        name[at] = b;
                        assert_eq!(
                            name_is(&name, lower),
                            name.eq_ignore_ascii_case(lower),
                            "{:?} against {:?}",
                            String::from_utf8_lossy(&name),
                            String::from_utf8_lossy(lower)
                        );
                        compared += 1;
                    }
                }
            }
        }
        assert_eq!(compared, 2 * 77 * (2 + 3 + 4 + 5 + 6 + 12 + 14 + 25));
    }

    #[test]
    fn a_raw_head_reads_as_hypers_does_without_regard_to_case() {
        let fields = [
            ("Host", "example.com"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("Cookie", "a=1"),
            ("x-forwarded-for", "10.0.0.2"),
        ];
        let (map, raw) = both(&fields);
        for head in [&map, &raw] {
            assert_eq!(head.field_count(), 4);
            let forwarded: Vec<&[u8]> = head.values("x-forwarded-for").collect();
            assert_eq!(forwarded, [&b"10.0.0.1"[..], b"10.0.0.2"]);
            assert_eq!(
                head.values("X-FORWARDED-FOR").last(),
                Some(&b"10.0.0.2"[..])
            );
            assert!(head.contains("cookie") && head.contains("HOST"));
            assert!(!head.contains("content-length"));
            let built = head.header_map();
            assert_eq!(built.len(), 4);
            assert_eq!(built.get_all("x-forwarded-for").iter().count(), 2);
            assert_eq!(built["host"], "example.com");
        }
        // A raw head keeps the names as sent and the order sent.
        let names: Vec<&[u8]> = raw.fields().map(|(name, _)| name).collect();
        assert_eq!(
            names,
            [
                &b"Host"[..],
                b"X-Forwarded-For",
                b"Cookie",
                b"x-forwarded-for"
            ]
        );
        let names: Vec<&[u8]> = map.fields().map(|(name, _)| name).collect();
        assert_eq!(
            names,
            [
                &b"host"[..],
                b"x-forwarded-for",
                b"x-forwarded-for",
                b"cookie"
            ]
        );
    }
}
