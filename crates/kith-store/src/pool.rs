//! A small blocking connection pool: a stack of idle connections and a limit.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::error::StoreError;

pub(crate) struct Pool<C> {
    idle: Mutex<PoolState<C>>,
    available: Condvar,
    max: usize,
    wait: Duration,
}

struct PoolState<C> {
    idle: Vec<C>,
    open: usize,
}

impl<C> Pool<C> {
    pub(crate) fn new(max: usize, wait: Duration) -> Self {
        Self { idle: Mutex::new(PoolState { idle: Vec::new(), open: 0 }), available: Condvar::new(), max, wait }
    }

    /// Runs `f` with a connection, opening one with `connect` when none is idle and the
    /// limit allows. A connection for which `f` reports `broken` is dropped, not returned.
    pub(crate) fn with<R>(
        &self,
        connect: impl FnOnce() -> Result<C, StoreError>,
        f: impl FnOnce(&mut C) -> (R, bool),
    ) -> Result<R, StoreError> {
        let mut connection = {
            let mut state = self.idle.lock().unwrap_or_else(|poison| poison.into_inner());
            loop {
                if let Some(connection) = state.idle.pop() {
                    break Some(connection);
                }
                if state.open < self.max {
                    state.open += 1;
                    break None;
                }
                let (next, timeout) =
                    self.available.wait_timeout(state, self.wait).unwrap_or_else(|poison| poison.into_inner());
                state = next;
                if timeout.timed_out() && state.idle.is_empty() && state.open >= self.max {
                    return Err(StoreError::unavailable("all database connections are busy"));
                }
            }
        };
        if connection.is_none() {
            match connect() {
                Ok(new) => connection = Some(new),
                Err(error) => {
                    self.release(None);
                    return Err(error);
                }
            }
        }
        let mut connection = connection.expect("a connection was taken or opened");
        let (result, broken) = f(&mut connection);
        self.release(if broken { None } else { Some(connection) });
        Ok(result)
    }

    fn release(&self, connection: Option<C>) {
        let mut state = self.idle.lock().unwrap_or_else(|poison| poison.into_inner());
        match connection {
            Some(connection) => state.idle.push(connection),
            None => state.open -= 1,
        }
        drop(state);
        self.available.notify_one();
    }
}
