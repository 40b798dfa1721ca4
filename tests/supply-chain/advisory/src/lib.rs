//! Nothing: only the lock file matters.
