//! A value built once per frame of a job's route, by the first recipient that needs
//! it (on any shard), and shared by the others: SSE events (`sse.rs`) and the
//! dialect's frames (`dialect.rs`). A job no such recipient reaches costs an empty
//! `OnceLock`; the per-channel cells are allocated only when needed.

use std::sync::OnceLock;

pub(crate) struct PerFrame<T> {
    /// The single frame of an `All`, `Users` or `Conns` route.
    one: OnceLock<T>,
    /// One per channel of a `Channels` route.
    many: OnceLock<Box<[OnceLock<T>]>>,
}

impl<T> Default for PerFrame<T> {
    fn default() -> Self {
        Self {
            one: OnceLock::new(),
            many: OnceLock::new(),
        }
    }
}

impl<T> PerFrame<T> {
    /// The value of a route's single frame.
    #[inline]
    pub(crate) fn one(&self, build: impl FnOnce() -> T) -> &T {
        self.one.get_or_init(build)
    }

    /// The value of channel `i` of `n`.
    #[inline]
    pub(crate) fn channel(&self, i: usize, n: usize, build: impl FnOnce() -> T) -> &T {
        let cells = self
            .many
            .get_or_init(|| (0..n).map(|_| OnceLock::new()).collect());
        cells[i].get_or_init(build)
    }
}
