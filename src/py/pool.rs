//! Reuse of per-request Python objects that no one else can reach.
//!
//! A request's `start_response` and `wsgi.input` each cost a Python object
//! to make and to free. A [`Pool`] keeps finished ones and hands them to the
//! next request, re-armed with its state, but only those the application
//! cannot tell were reused: nothing but the server holds them, not even
//! weakly, when they are put in the pool ([`Pool::release`]) and again when
//! they are taken out ([`Pool::acquire`]), since an object in the pool can
//! still be found (`gc.get_objects()` lists those the collector tracks).

use std::cell::RefCell;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::GILProtected;
use pyo3::{PyClass, PyClassInitializer};

/// The most finished objects a [`Pool`] keeps.
const POOL_MAX: usize = 16;

/// A pyclass a [`Pool`] can reuse.
pub(crate) trait Reusable:
    PyClass<Frozen = pyo3::pyclass::boolean_struct::False> + Into<PyClassInitializer<Self>>
{
    /// How many companions the object keeps: Python objects the server made
    /// for it that each hold one reference to it and are held only by it
    /// (the bound `start_response` and `write` of `start_response`). Such an
    /// object is reused only with its companions, which no one else may
    /// hold either. At most [`COMPANIONS_MAX`].
    const COMPANIONS: usize = 0;

    /// Take the companions out of the object (`None` for those it has not).
    fn take_companions(&mut self) -> Companions {
        Companions::default()
    }

    /// Put `companions` (from [`Reusable::take_companions`]) back.
    fn set_companions(&mut self, companions: Companions) {
        let _ = companions;
    }

    /// Set up an object just made for a request (make its companions).
    ///
    /// # Errors
    ///
    /// The Python error of making the companion.
    fn made(object: &Bound<'_, Self>) -> PyResult<()> {
        let _ = object;
        Ok(())
    }

    /// What a request gives the object: all of its request's state.
    type Arm;

    /// A new object's state for a request.
    fn new(arm: Self::Arm) -> Self;

    /// Put a new request's state in a pooled object, leaving none of the
    /// last request's.
    fn rearm(&mut self, arm: Self::Arm);

    /// Drop what belongs to the finished request (its connection's state, a
    /// body's bytes) as the object goes into the pool.
    fn retire(&mut self);
}

/// The most companions an object keeps ([`Reusable::COMPANIONS`]).
pub(crate) const COMPANIONS_MAX: usize = 2;

/// The companions of an object ([`Reusable::COMPANIONS`]).
pub(crate) type Companions = [Option<Py<PyAny>>; COMPANIONS_MAX];

/// Finished objects of type `T` that nothing but the pool references.
pub(crate) struct Pool<T> {
    objects: GILProtected<RefCell<Vec<Py<T>>>>,
}

impl<T: Reusable> Pool<T> {
    /// An empty pool (for a `static`).
    pub(crate) const fn new() -> Pool<T> {
        Pool {
            objects: GILProtected::new(RefCell::new(Vec::new())),
        }
    }

    /// The object for a new request armed with `arm`: a finished one from
    /// the pool, re-armed ([`Reusable::rearm`]: none of its last request's
    /// state is left), or a new one.
    ///
    /// # Errors
    ///
    /// The Python error of making a new object (out of memory).
    pub(crate) fn acquire<'py>(&self, py: Python<'py>, arm: T::Arm) -> PyResult<Bound<'py, T>> {
        loop {
            let pooled = self.objects.get(py).borrow_mut().pop();
            let Some(object) = pooled else { break };
            let object = object.into_bound(py);
            let Ok(companions) = object
                .try_borrow_mut()
                .map(|mut this| this.take_companions())
            else {
                continue; // found while pooled, and in use: left to its finder
            };
            // One found while pooled and kept since [`Pool::release`] is left
            // to its finder, its cycles with the companions broken as they
            // are dropped here (no borrow of the pool is held: that can run
            // Python code).
            if !unseen(py, &object, &companions) {
                continue;
            }
            {
                let mut this = object.borrow_mut();
                this.rearm(arm);
                this.set_companions(companions);
            }
            return Ok(object);
        }
        let object = Bound::new(py, T::new(arm))?;
        T::made(&object)?;
        Ok(object)
    }

    /// The request of `object` is over: keep it for [`Pool::acquire`] when
    /// nothing but this call (and its companions) references it, nothing but
    /// itself references each companion, and none of them is weakly
    /// referenced (the application kept none of them, so no one can see it
    /// reused), and the pool has room; it drops its request's state then
    /// ([`Reusable::retire`]). Else its cycles with the companions are
    /// broken, so it is freed with its last reference, and nothing else
    /// changes in it.
    pub(crate) fn release(&self, py: Python<'_>, object: Bound<'_, T>) {
        let Ok(companions) = object
            .try_borrow_mut()
            .map(|mut this| this.take_companions())
        else {
            return; // in use further up the stack: not ours to keep
        };
        // No borrow of the pool is held while a companion may be dropped:
        // its last reference going can run Python code (a `weakref.finalize`
        // callback), and with it another thread's `acquire`.
        if !unseen(py, &object, &companions) || self.objects.get(py).borrow().len() >= POOL_MAX {
            return;
        }
        {
            let mut this = object.borrow_mut();
            this.retire();
            this.set_companions(companions);
        }
        self.objects.get(py).borrow_mut().push(object.unbind());
    }

    /// How many objects are pooled.
    #[cfg(test)]
    pub(crate) fn len(&self, py: Python<'_>) -> usize {
        self.objects.get(py).borrow().len()
    }

    /// Take every pooled object out (they are not reused while held).
    #[cfg(test)]
    pub(crate) fn take_all(&self, py: Python<'_>) -> Vec<Py<T>> {
        std::mem::take(&mut *self.objects.get(py).borrow_mut())
    }

    /// A new reference to the object `acquire` would take next, as someone
    /// who found it in the pool (`gc.get_objects()`) would hold it.
    #[cfg(test)]
    pub(crate) fn find(&self, py: Python<'_>) -> Option<Py<T>> {
        self.objects
            .get(py)
            .borrow()
            .last()
            .map(|o| o.clone_ref(py))
    }
}

/// Held by each test that counts a pool (taken before the GIL): code that
/// runs Python may let another test thread take the GIL midway.
#[cfg(test)]
pub(crate) static POOL_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Whether no one else can see `object` reused: nothing but one holder (the
/// caller's, or the pool's) and its companions reference it, nothing but the
/// caller references each companion, taken out of it, and none of them is
/// weakly referenced. An object is reused only with all its companions.
fn unseen<T: Reusable>(py: Python<'_>, object: &Bound<'_, T>, companions: &Companions) -> bool {
    // A borrow of the object holds a reference too, so none is held while
    // counting. A weak reference counts for nothing in a count, yet reaches
    // its object: reused, it would reach the next request's.
    let mut holders = 1;
    for companion in companions.iter().flatten() {
        if companion.get_refcnt(py) != 1 || weakly_referenced(companion.bind(py)) {
            return false;
        }
        holders += 1;
    }
    let object = object.as_any();
    holders == 1 + T::COMPANIONS as isize
        && object.get_refcnt() == holders
        && !weakly_referenced(object)
}

/// Whether `object` may have weak references (`weakref.ref`, a `WeakSet`,
/// `weakref.finalize`): false if its type takes none, or keeps a weak
/// reference list and the list is empty.
fn weakly_referenced(object: &Bound<'_, PyAny>) -> bool {
    let ptr = object.as_ptr();
    // SAFETY: `ptr` is a live object (borrowed by `object`, GIL held); a
    // type's `tp_weaklistoffset` is 0 when it takes no weak references
    // (`weakref.ref` raises TypeError: CPython's `PyType_SUPPORTS_WEAKREFS`);
    // when positive, the object holds its weak reference list (NULL when
    // empty) that many bytes from its start (CPython's
    // `_PyObject_GET_WEAKREFS_LISTPTR_FROM_OFFSET`). A type that keeps the
    // list elsewhere (negative offset, 3.12's managed list) counts as weakly
    // referenced. Not pyo3-ffi 0.25's `PyObject_GET_WEAKREFS_LISTPTR`: it
    // adds the offset to a `*mut PyObject`, so counts it in objects, not bytes.
    unsafe {
        let offset = (*ffi::Py_TYPE(ptr)).tp_weaklistoffset;
        offset < 0
            || (offset > 0
                && !(*ptr.cast::<u8>().offset(offset).cast::<*mut ffi::PyObject>()).is_null())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reusable pyclass that takes weak references (neither `Input` nor
    /// `StartResponse` does), with a mark of the request it serves.
    #[pyclass(weakref)]
    struct Probe {
        request: u32,
    }

    impl Reusable for Probe {
        type Arm = Probe;

        fn new(arm: Probe) -> Probe {
            arm
        }

        fn rearm(&mut self, arm: Probe) {
            *self = arm;
        }

        fn retire(&mut self) {
            self.request = 0;
        }
    }

    static PROBES: Pool<Probe> = Pool::new();

    #[test]
    fn a_weakly_referenced_object_is_not_reused() {
        let _pool = POOL_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        Python::with_gil(|py| {
            let weakref = py.import("weakref").unwrap();
            let first = PROBES.acquire(py, Probe { request: 1 }).unwrap();
            let address = first.as_ptr();
            PROBES.release(py, first);
            assert_eq!(PROBES.len(py), 1, "unseen: kept");
            let again = PROBES.acquire(py, Probe { request: 2 }).unwrap();
            assert_eq!(again.as_ptr(), address, "reused");
            let weak = weakref.call_method1("ref", (&again,)).unwrap();
            PROBES.release(py, again);
            assert_eq!(PROBES.len(py), 0, "weakly referenced: not kept");
            assert!(weak.call0().unwrap().is_none(), "died with its request");
            // Weakly referenced while pooled (found there): not handed out.
            let pooled = PROBES.acquire(py, Probe { request: 3 }).unwrap();
            PROBES.release(py, pooled);
            let found = PROBES.find(py).unwrap();
            let weak = weakref.call_method1("ref", (&found,)).unwrap();
            drop(found);
            let next = PROBES.acquire(py, Probe { request: 4 }).unwrap();
            assert!(
                weak.call0().unwrap().is_none(),
                "a new one: the found one died"
            );
            assert_eq!(next.borrow().request, 4);
            PROBES.release(py, next);
            drop(PROBES.take_all(py));
        });
    }
}
