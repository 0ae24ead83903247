//! The `Py_3_*` (and `PyPy`, `Py_LIMITED_API`, ...) cfgs of the Python that
//! ferrule is built for, as pyo3 sets them for itself: code that reads a
//! CPython structure only some versions have (the dict version tag in
//! src/py/environ.rs) compiles only for those.

fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
