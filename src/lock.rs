//! The one way flowwatch takes a std `Mutex`: every value behind one is
//! changed by a single insert, remove or assignment, so a panic elsewhere
//! cannot leave it half-updated, and a poisoned lock is still safe to use.
//! (A panic is a bug, reported where it happens; it must not take the
//! state writer, the HTTP server or the file watcher down with it.)

use std::sync::{Mutex, MutexGuard, PoisonError};

/// The guard, whether or not a thread panicked while holding the lock.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
