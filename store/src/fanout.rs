//! Bounded fan-out on the tokio runtime: at most `width` tasks in flight, results in
//! completion order, the first error ends the batch (in-flight tasks are aborted).

use crate::error::{Error, Result};
use std::future::Future;
use tokio::task::JoinSet;

/// Runs `f` over `items` with at most `width` spawned tasks at once.
///
/// # Errors
/// The first error a task returns; [`Error::Internal`] if a task panics.
pub async fn fan_out<I, F, Fut, T>(items: I, width: usize, mut f: F) -> Result<Vec<T>>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let mut set = JoinSet::new();
    let mut items = items.into_iter();
    let mut out = Vec::new();
    loop {
        while set.len() < width.max(1) {
            match items.next() {
                Some(item) => {
                    set.spawn(f(item));
                }
                None => break,
            }
        }
        match set.join_next().await {
            Some(Ok(Ok(v))) => out.push(v),
            Some(Ok(Err(e))) => return Err(e),
            Some(Err(e)) => return Err(Error::Internal(format!("worker task failed: {e}"))),
            None => return Ok(out),
        }
    }
}
