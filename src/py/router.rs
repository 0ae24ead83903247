//! pyo3 glue for [`crate::router`] (placeholder: issue 6).

use pyo3::prelude::*;

pub(crate) fn init(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
