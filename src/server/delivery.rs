//! Delivery helpers: after the message writer commits a batch, the sockets
//! of the recipients are written by the writer and a few helper threads in
//! parallel, one share each.
//!
//! A delivery to a sleeping session is a TLS write and a `send(2)` done by
//! whoever delivers ([`Outbox::deliver`]). On loopback most of a send's
//! cost is the kernel's (the receiving side's TCP work and wake-up run in
//! the sender's context), so one thread writing to a 200-member room takes
//! about 2 ms per batch on this class of machine. Splitting the recipients
//! over one thread per core divides that wall time, which is what a
//! message's latency is made of.
//!
//! **Ordering.** Whichever thread delivers, an outbox's bytes were queued
//! in commit order and are moved out only by the holder of the connection's
//! lock, all at once and in order, so each recipient still gets messages in
//! id order.

use super::outbox::Outbox;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Fewer recipients than this are delivered by the writer alone: a
/// hand-off costs a wake-up of the helper, worth it only for a few sends.
const MIN_SPLIT: usize = 8;
/// Batches a helper may have waiting before the writer waits for it.
const HELPER_QUEUE: usize = 64;

/// The writer's delivery helpers.
#[derive(Debug)]
pub struct Deliverers {
    helpers: Vec<SyncSender<Vec<Arc<Outbox>>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Deliverers {
    /// Starts `helpers` helper threads (0: the writer delivers alone).
    pub fn spawn(helpers: usize) -> std::io::Result<Deliverers> {
        let mut d = Deliverers {
            helpers: Vec::new(),
            threads: Vec::new(),
        };
        for i in 0..helpers {
            let (tx, rx) = sync_channel(HELPER_QUEUE);
            d.threads.push(
                std::thread::Builder::new()
                    .name(format!("delivery-{i}"))
                    .stack_size(256 * 1024)
                    .spawn(move || run(&rx))?,
            );
            d.helpers.push(tx);
        }
        Ok(d)
    }

    /// One helper per core beyond the first, at most three.
    pub fn for_this_machine() -> std::io::Result<Deliverers> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Deliverers::spawn(cores.saturating_sub(1).min(3))
    }

    /// Delivers to every outbox in `list`: the helpers take their shares,
    /// the calling thread does the first.
    pub fn deliver(&self, mut list: Vec<Arc<Outbox>>) {
        let parts = self.helpers.len() + 1;
        if parts == 1 || list.len() < MIN_SPLIT {
            list.iter().for_each(|o| o.deliver());
            return;
        }
        let share = list.len().div_ceil(parts);
        let mut rest = list.split_off(share.min(list.len()));
        for tx in &self.helpers {
            if rest.is_empty() {
                break;
            }
            let tail = rest.split_off(share.min(rest.len()));
            let mine = std::mem::replace(&mut rest, tail);
            if let Err(unsent) = tx.send(mine) {
                // The helper is gone (it panicked): deliver here instead.
                unsent.0.iter().for_each(|o| o.deliver());
            }
        }
        list.iter().for_each(|o| o.deliver());
    }
}

impl Drop for Deliverers {
    fn drop(&mut self) {
        // Closing the channels ends the helpers once they have delivered
        // what they were given.
        self.helpers.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn run(rx: &Receiver<Vec<Arc<Outbox>>>) {
    while let Ok(list) = rx.recv() {
        list.iter().for_each(|o| o.deliver());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outbox_is_woken_whichever_thread_takes_it() {
        let d = Deliverers::spawn(2).unwrap();
        let boxes: Vec<Arc<Outbox>> = (0..50).map(|_| Arc::new(Outbox::new(1024))).collect();
        for b in &boxes {
            assert_eq!(b.push_deferred(b"x"), Some(true));
        }
        d.deliver(boxes.clone());
        drop(d); // joins the helpers
        for b in &boxes {
            // No connection to write to: each was woken instead.
            assert!(b.waker().is_raised());
        }
    }
}
