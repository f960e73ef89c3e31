//! The paged KV cache's bookkeeping (the PagedAttention idea): the cache of every layer
//! is one pool of pages of `2^shift` positions, and each sequence (slot) has a page
//! table mapping its logical pages to pool pages, allocated as it grows and released as
//! it shrinks, so sequences of any length share one budget. Pages whose tokens are
//! known can be published to a prefix cache; a new sequence whose prompt starts with the
//! same tokens adopts those pages instead of computing them again (a shared system
//! prompt, a chat's earlier turns). Whole pages are shared as they are; a page the
//! prompt matches only in part (a chat's last turn ends inside a page, or the same short
//! prompt again) is copied to a page of the new sequence, which keeps the positions that
//! match. A page held by several sequences is never written: a sequence writes only at
//! or past its length, which lies in a page of its own, and a truncation into a shared
//! page copies it first (`truncate` and `adopt` report the copy for the GPU). A page
//! published in part keeps its key's positions: its holder writes only past them, and a
//! truncation into it drops it from the cache. Released cached pages stay cached until
//! the pool needs them (least recently used first).

use std::collections::{BTreeMap, HashMap};

/// No page: the parent of a sequence's first page in the prefix cache.
const ROOT: u32 = u32::MAX;

/// A prefix-cache key: the page before (the whole prefix up to here, since that page's
/// own key names its parent) and this page's tokens (fewer than a page's positions for
/// a page published in part: only ever copied, never shared).
type Key = (u32, Box<[u32]>);

/// Pages in use, cached and free, for `/metrics`, `hearth bench` and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageStats {
    /// Positions per page.
    pub page_size: usize,
    /// Pages in the pool.
    pub total: usize,
    /// Pages held by at least one sequence.
    pub held: usize,
    /// Pages held by no sequence but kept for their cached prefix.
    pub cached: usize,
}

/// What a truncation into the middle of a page needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Nothing: the pages kept are the sequence's own (or it ends on a page boundary).
    Done,
    /// The GPU must copy pool page `from` to `to` (the sequence's copy of a shared page)
    /// before the next step.
    Copy { from: u32, to: u32 },
    /// The shared page could not be copied (no page left): keep only whole pages.
    NoRoom,
}

/// What `adopt` gave a new sequence (the default: nothing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Adopted {
    /// Positions adopted: whole shared pages and the matching start of a copied page.
    pub positions: usize,
    /// The copy the GPU must make before the sequence's next step (pool page `from` to
    /// `to`, as `Cut::Copy`), when the last positions came from a page matched in part.
    pub copy: Option<(u32, u32)>,
}

/// The page pool, page tables and prefix cache of one model's KV cache.
#[derive(Debug)]
pub struct KvPages {
    shift: u32,
    per_slot: usize,
    /// Per slot: the pool page of each logical page in use.
    tables: Vec<Vec<u32>>,
    /// Per slot: its table changed since `take_dirty`.
    dirty: Vec<bool>,
    /// Per pool page: the tables holding it.
    refs: Vec<u32>,
    /// Pages neither held nor cached.
    free: Vec<u32>,
    /// Prefix cache: key to page, and each cached page's key and cached children (the
    /// first pages of cached prefixes in `roots`).
    cache: HashMap<Key, u32>,
    key_of: Vec<Option<Key>>,
    children: Vec<Vec<u32>>,
    roots: Vec<u32>,
    /// Cached pages no table holds, by when they were last released (evicted oldest first).
    idle: BTreeMap<u64, u32>,
    idle_at: Vec<u64>,
    tick: u64,
}

impl KvPages {
    /// A pool of `pages` pages of `2^shift` positions for `slots` sequences of at most
    /// `per_slot` pages each.
    pub fn new(pages: usize, shift: u32, slots: usize, per_slot: usize) -> Self {
        Self {
            shift,
            per_slot,
            tables: vec![Vec::new(); slots],
            dirty: vec![true; slots],
            refs: vec![0; pages],
            // Popped from the end: page 0 first.
            free: (0..pages as u32).rev().collect(),
            cache: HashMap::new(),
            key_of: vec![None; pages],
            children: vec![Vec::new(); pages],
            roots: Vec::new(),
            idle: BTreeMap::new(),
            idle_at: vec![0; pages],
            tick: 0,
        }
    }

    /// The smallest page shift (at least 4: 16 positions) whose tables for `slots`
    /// sequences of `capacity` positions fit in `max_entries`, and the entries per slot.
    pub fn geometry(slots: usize, capacity: usize, max_entries: usize) -> (u32, usize) {
        let mut shift = 4;
        loop {
            let per_slot = capacity.div_ceil(1 << shift).max(1);
            if slots * per_slot <= max_entries || shift >= 30 {
                return (shift, per_slot);
            }
            shift += 1;
        }
    }

    /// Positions per page.
    pub fn page_size(&self) -> usize {
        1 << self.shift
    }

    /// log2 of the page size.
    pub fn shift(&self) -> u32 {
        self.shift
    }

    /// Page-table entries per slot.
    pub fn per_slot(&self) -> usize {
        self.per_slot
    }

    /// Pages in use, cached and in the pool.
    pub fn stats(&self) -> PageStats {
        let held = self.refs.iter().filter(|&&r| r > 0).count();
        PageStats {
            page_size: self.page_size(),
            total: self.refs.len(),
            held,
            cached: self.idle.len(),
        }
    }

    /// Pages held by the sequence in `slot`.
    pub fn held_by(&self, slot: usize) -> usize {
        self.tables[slot].len()
    }

    /// Gives `slot` pages for its first `len` positions. Fails, allocating nothing,
    /// when the pool (free pages and cached pages no sequence holds) runs out.
    pub fn ensure(&mut self, slot: usize, len: usize) -> Result<(), String> {
        let more = self.missing(slot, len)?;
        if more == 0 {
            return Ok(());
        }
        for _ in 0..more {
            let page = self.take().ok_or_else(|| self.full(1))?;
            self.refs[page as usize] = 1;
            self.tables[slot].push(page);
        }
        self.dirty[slot] = true;
        Ok(())
    }

    /// Whether `ensure(slot, len)` would find its pages now (the same error if not).
    pub fn room(&self, slot: usize, len: usize) -> Result<(), String> {
        self.missing(slot, len).map(drop)
    }

    /// The pages `slot` lacks for its first `len` positions, or why the pool cannot give
    /// them (past a sequence's table, or more than the free and cached pages).
    fn missing(&self, slot: usize, len: usize) -> Result<usize, String> {
        let want = len.div_ceil(self.page_size());
        let more = want.saturating_sub(self.tables[slot].len());
        if more == 0 {
            return Ok(0);
        }
        if want > self.per_slot {
            return Err(format!(
                "{len} positions exceed a sequence's {} pages of {}",
                self.per_slot,
                self.page_size()
            ));
        }
        if more > self.free.len() + self.idle.len() {
            return Err(self.full(more));
        }
        Ok(more)
    }

    fn full(&self, more: usize) -> String {
        let s = self.stats();
        format!(
            "the KV cache is full: {more} more pages of {} positions needed, {} of {} held \
             by running sequences (raise --kv-size or lower --parallel)",
            s.page_size, s.held, s.total
        )
    }

    /// A page from the free list, or the least recently released cached page.
    fn take(&mut self) -> Option<u32> {
        if let Some(p) = self.free.pop() {
            return Some(p);
        }
        let (_, &page) = self.idle.iter().next()?;
        self.uncache(page);
        // `uncache` freed it (and its cached descendants, all idle too).
        self.free.pop()
    }

    /// Drops `page` and every page cached below it from the prefix cache; those no
    /// table holds go back to the free list.
    fn uncache(&mut self, page: u32) {
        let Some(key) = self.key_of[page as usize].take() else {
            return;
        };
        self.cache.remove(&key);
        self.children_mut(key.0).retain(|&c| c != page);
        for child in std::mem::take(&mut self.children[page as usize]) {
            self.uncache(child);
        }
        if self.refs[page as usize] == 0 {
            self.idle.remove(&self.idle_at[page as usize]);
            self.free.push(page);
        }
    }

    /// The cached pages that follow `parent` (`ROOT`: the cached first pages).
    fn children_of(&self, parent: u32) -> &[u32] {
        if parent == ROOT {
            &self.roots
        } else {
            &self.children[parent as usize]
        }
    }

    fn children_mut(&mut self, parent: u32) -> &mut Vec<u32> {
        if parent == ROOT {
            &mut self.roots
        } else {
            &mut self.children[parent as usize]
        }
    }

    /// One fewer table holds `page`: unheld, it is cached idle or freed.
    fn unref(&mut self, page: u32) {
        let r = &mut self.refs[page as usize];
        *r -= 1;
        if *r > 0 {
            return;
        }
        if self.key_of[page as usize].is_some() {
            self.tick += 1;
            self.idle_at[page as usize] = self.tick;
            self.idle.insert(self.tick, page);
        } else {
            self.free.push(page);
        }
    }

    /// Keeps `slot`'s first `len` positions, releasing the pages past them. When `len`
    /// ends inside a page, that page will be written again: a page other sequences hold
    /// is copied to a page of this one (the returned copy; `None` when the pool has no
    /// page for it, and the caller must then keep only the whole pages), and a cached
    /// page leaves the prefix cache.
    pub fn truncate(&mut self, slot: usize, len: usize) -> Cut {
        let keep = len.div_ceil(self.page_size());
        while self.tables[slot].len() > keep {
            let page = self.tables[slot].pop().expect("longer than keep");
            self.unref(page);
            self.dirty[slot] = true;
        }
        if len.is_multiple_of(self.page_size()) || keep == 0 || keep > self.tables[slot].len() {
            return Cut::Done;
        }
        let last = self.tables[slot][keep - 1];
        if self.refs[last as usize] == 1 {
            self.uncache(last);
            return Cut::Done;
        }
        let Some(copy) = self.take() else {
            return Cut::NoRoom;
        };
        self.refs[copy as usize] = 1;
        self.unref(last);
        self.tables[slot][keep - 1] = copy;
        self.dirty[slot] = true;
        Cut::Copy {
            from: last,
            to: copy,
        }
    }

    /// Starts the empty sequence in `slot` with the longest run of cached whole pages
    /// that `tokens` begins with, then, where the rest of `tokens` matches the start of a
    /// cached page that follows them, a copy of that page (a page of the sequence's own,
    /// its matching positions kept; none when the pool has no page for it). The caller
    /// still feeds the rest, so it passes at most the prompt's tokens before the last.
    pub fn adopt(&mut self, slot: usize, tokens: &[u32]) -> Adopted {
        if !self.tables[slot].is_empty() {
            return Adopted::default();
        }
        let size = self.page_size();
        let mut parent = ROOT;
        for chunk in tokens.chunks_exact(size).take(self.per_slot) {
            let key: Key = (parent, chunk.into());
            let Some(&page) = self.cache.get(&key) else {
                break;
            };
            self.hold(page);
            self.tables[slot].push(page);
            parent = page;
        }
        self.dirty[slot] = true;
        let whole = self.tables[slot].len() * size;
        let copy = if self.tables[slot].len() < self.per_slot {
            self.adopt_part(slot, parent, &tokens[whole..])
        } else {
            None
        };
        Adopted {
            positions: whole + copy.map_or(0, |(_, n)| n),
            copy: copy.map(|(c, _)| c),
        }
    }

    /// One more table holds `page` (a cached idle page is idle no more).
    fn hold(&mut self, page: u32) {
        if self.refs[page as usize] == 0 {
            self.idle.remove(&self.idle_at[page as usize]);
        }
        self.refs[page as usize] += 1;
    }

    /// Appends to `slot`'s table a copy of the cached page after `parent` whose tokens
    /// share the longest start with `rest`: the copy (from, to) and the positions kept.
    fn adopt_part(
        &mut self,
        slot: usize,
        parent: u32,
        rest: &[u32],
    ) -> Option<((u32, u32), usize)> {
        let rest = &rest[..rest.len().min(self.page_size())];
        let (n, from) = self
            .children_of(parent)
            .iter()
            .map(|&page| {
                let key = &self.key_of[page as usize]
                    .as_ref()
                    .expect("a cached page")
                    .1;
                let n = key.iter().zip(rest).take_while(|(a, b)| a == b).count();
                (n, page)
            })
            .max()?;
        if n == 0 {
            return None;
        }
        // Held while a page is taken, so that the pool does not evict the page copied.
        self.hold(from);
        let to = self.take();
        self.unref(from);
        let to = to?;
        self.refs[to as usize] = 1;
        self.tables[slot].push(to);
        Some(((from, to), n))
    }

    /// Publishes `slot`'s pages to the prefix cache, `tokens` being the tokens at its
    /// first positions (pages past `tokens` or past the table are left out; a last page
    /// `tokens` covers in part is published with the tokens it has, and a page published
    /// in part gains the tokens a later call knows). A page whose prefix another page
    /// already caches is not published (nor are its successors).
    pub fn publish(&mut self, slot: usize, tokens: &[u32]) {
        let mut parent = ROOT;
        let pages = self.tables[slot].clone();
        for (chunk, page) in tokens.chunks(self.page_size()).zip(pages) {
            let key: Key = (parent, chunk.into());
            match &self.key_of[page as usize] {
                Some(k) if *k == key => {}
                Some(k) if k.0 == parent && chunk.starts_with(&k.1) => {
                    if self.cache.contains_key(&key) {
                        return;
                    }
                    let old = self.key_of[page as usize].replace(key.clone());
                    self.cache.remove(&old.expect("matched above"));
                    self.cache.insert(key, page);
                }
                Some(_) => return,
                None => {
                    if self.cache.contains_key(&key) {
                        return;
                    }
                    self.cache.insert(key.clone(), page);
                    self.key_of[page as usize] = Some(key);
                    self.children_mut(parent).push(page);
                }
            }
            parent = page;
        }
    }

    /// The page tables that changed since the last call: `(first entry, entries)` per
    /// slot, unused entries 0.
    pub fn take_dirty(&mut self) -> Vec<(usize, Vec<u32>)> {
        let mut out = Vec::new();
        for (slot, d) in self.dirty.iter_mut().enumerate() {
            if std::mem::take(d) {
                let mut e = self.tables[slot].clone();
                e.resize(self.per_slot, 0);
                out.push((slot * self.per_slot, e));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(n: usize, seed: u32) -> Vec<u32> {
        (0..n as u32).map(|i| i.wrapping_mul(7) + seed).collect()
    }

    #[test]
    fn pages_grow_shrink_and_run_out() {
        let mut p = KvPages::new(4, 4, 2, 4);
        p.ensure(0, 17).unwrap();
        assert_eq!(p.held_by(0), 2);
        p.ensure(1, 32).unwrap();
        assert!(p.ensure(0, 33).unwrap_err().contains("full"));
        assert_eq!(p.held_by(0), 2, "a failed ensure allocates nothing");
        p.truncate(1, 0);
        p.ensure(0, 64).unwrap();
        assert!(p.ensure(0, 65).unwrap_err().contains("exceed"));
        assert_eq!(p.stats().held, 4);
    }

    /// What `adopt` gives: `positions`, and the copy when some came from a page in part.
    fn got(positions: usize, copy: Option<(u32, u32)>) -> Adopted {
        Adopted { positions, copy }
    }

    #[test]
    fn shared_prefix_is_adopted_copied_on_truncate_and_evicted_last_used_first() {
        let mut p = KvPages::new(8, 4, 3, 8);
        let a = toks(40, 1);
        p.ensure(0, 40).unwrap();
        p.publish(0, &a);
        // Two whole pages are cached, and the third with its 8 tokens.
        let mut b = a[..35].to_vec();
        b.push(999);
        let third = p.tables[0][2];
        let got1 = p.adopt(1, &b);
        assert_eq!(got1, got(35, Some((third, p.tables[1][2]))));
        assert_eq!(
            &p.tables[1][..2],
            &p.tables[0][..2],
            "whole pages are shared"
        );
        assert_ne!(p.tables[1][2], third, "a page matched in part is copied");
        assert_eq!(p.stats().held, 4);
        assert_eq!(
            p.adopt(2, &toks(40, 2)),
            got(0, None),
            "another prompt shares nothing"
        );
        // Truncating slot 1 into its shared second page copies it (its own third page
        // goes back to the pool).
        let Cut::Copy { from, to } = p.truncate(1, 20) else {
            panic!("a shared page is copied");
        };
        assert_eq!(from, p.tables[0][1]);
        assert_eq!(to, p.tables[1][1]);
        assert_ne!(to, from);
        // Slot 0 leaves: its second and third pages are cached idle (slot 1 still holds
        // the first), and slot 2 can still adopt all 40 positions.
        p.truncate(0, 0);
        assert_eq!(p.stats().cached, 2);
        assert_eq!(p.adopt(2, &a).positions, 40);
        p.truncate(2, 0);
        p.truncate(1, 0);
        // Filling the pool evicts the cached pages.
        p.ensure(0, 128).unwrap();
        assert_eq!(
            p.stats(),
            PageStats {
                page_size: 16,
                total: 8,
                held: 8,
                cached: 0
            }
        );
        p.truncate(0, 0);
        assert_eq!(
            p.adopt(1, &a),
            got(0, None),
            "evicted pages are no longer cached"
        );
    }

    #[test]
    fn a_page_matched_in_part_is_copied_and_never_evicted_for_its_own_copy() {
        let mut p = KvPages::new(3, 4, 3, 4);
        let a = toks(24, 1);
        p.ensure(0, 24).unwrap();
        p.publish(0, &a[..23]);
        let (first, second) = (p.tables[0][0], p.tables[0][1]);
        p.truncate(0, 0);
        assert_eq!(p.stats().cached, 2);
        // The same short prompt again: the start of the cached first page, copied.
        let short = p.adopt(1, &a[..7]);
        assert_eq!(short, got(7, Some((first, p.tables[1][0]))));
        assert_ne!(p.tables[1][0], first);
        // The whole first page shared, then the second matched in part; the pool's only
        // spare page is the one to copy, so nothing is copied.
        assert_eq!(p.adopt(2, &a[..23]), got(16, None));
        assert_eq!(p.stats().cached, 1, "the second page stays cached");
        p.truncate(1, 0);
        p.truncate(2, 0);
        let again = p.adopt(2, &a[..23]);
        assert_eq!(again, got(23, Some((second, p.tables[2][1]))));
        assert_eq!(p.tables[2][0], first);
        // A prompt that leaves the cached tokens at once takes nothing.
        p.truncate(2, 0);
        let mut c = a[..16].to_vec();
        c.push(999);
        assert_eq!(p.adopt(1, &c), got(16, None));
    }

    #[test]
    fn a_page_published_in_part_gains_the_tokens_known_later() {
        let mut p = KvPages::new(4, 4, 2, 4);
        let a = toks(20, 1);
        p.ensure(0, 20).unwrap();
        p.publish(0, &a[..18]);
        p.publish(0, &a[..20]);
        assert_eq!(p.cache.len(), 2, "the page's shorter key is gone");
        assert_eq!(p.adopt(1, &a).positions, 20);
        // Fewer tokens than the key has keep the key.
        p.truncate(1, 0);
        p.publish(0, &a[..17]);
        assert_eq!(p.adopt(1, &a).positions, 20);
    }

    #[test]
    fn geometry_fits_the_table() {
        assert_eq!(KvPages::geometry(1, 4096, 8192), (4, 256));
        assert_eq!(KvPages::geometry(16, 8192, 8192), (4, 512));
        assert_eq!(KvPages::geometry(32, 8192, 8192), (5, 256));
        assert_eq!(KvPages::geometry(1, 1 << 20, 8192), (7, 8192));
    }
}
