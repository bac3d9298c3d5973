//! A table: a `BTreeMap` that remembers what a unit of work changed, so that a refused unit is
//! undone row by row and a committed one costs nothing more than its own writes.

use std::collections::BTreeMap;
use std::ops::RangeBounds;

/// Rows by key, with the undo log of the unit of work being applied.
#[derive(Debug)]
pub(crate) struct Table<K, V> {
    rows: BTreeMap<K, V>,
    /// The previous value of every row written since the last [`Table::keep`], oldest first.
    undo: Vec<(K, Option<V>)>,
}

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Table { rows: BTreeMap::new(), undo: Vec::new() }
    }
}

impl<K: Ord + Clone, V: Clone> Table<K, V> {
    pub(crate) fn get(&self, k: &K) -> Option<&V> {
        self.rows.get(k)
    }

    pub(crate) fn contains(&self, k: &K) -> bool {
        self.rows.contains_key(k)
    }

    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    pub(crate) fn values(&self) -> impl DoubleEndedIterator<Item = &V> {
        self.rows.values()
    }

    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> {
        self.rows.iter()
    }

    pub(crate) fn range(&self, r: impl RangeBounds<K>) -> impl DoubleEndedIterator<Item = (&K, &V)> {
        self.rows.range(r)
    }

    /// Writes a row; returns the previous one.
    pub(crate) fn put(&mut self, k: K, v: V) -> Option<V> {
        let old = self.rows.insert(k.clone(), v);
        self.undo.push((k, old.clone()));
        old
    }

    /// Writes a row only if there is none: false (and nothing written) if there is one.
    pub(crate) fn insert_new(&mut self, k: K, v: V) -> bool {
        if self.rows.contains_key(&k) {
            return false;
        }
        self.put(k, v);
        true
    }

    /// Removes a row; returns it.
    pub(crate) fn remove(&mut self, k: &K) -> Option<V> {
        let old = self.rows.remove(k)?;
        self.undo.push((k.clone(), Some(old.clone())));
        Some(old)
    }

    /// Changes a row in place: false if there is none.
    pub(crate) fn update(&mut self, k: &K, f: impl FnOnce(&mut V)) -> bool {
        self.update_if(k, |_| true, f)
    }

    /// Changes a row in place if `when` holds for it: false if there is none or it does not hold.
    pub(crate) fn update_if(&mut self, k: &K, when: impl FnOnce(&V) -> bool, f: impl FnOnce(&mut V)) -> bool {
        let Some(row) = self.rows.get_mut(k).filter(|r| when(r)) else { return false };
        self.undo.push((k.clone(), Some(row.clone())));
        f(row);
        true
    }
}

/// What a state made of tables does at the end of a unit of work.
pub(crate) trait Journal {
    /// Forgets the undo log: the unit is committed.
    fn keep(&mut self);
    /// Puts back every row the unit wrote, newest first: the unit is refused.
    fn undo(&mut self);
}

impl<K: Ord, V> Journal for Table<K, V> {
    fn keep(&mut self) {
        self.undo.clear();
    }

    fn undo(&mut self) {
        while let Some((k, old)) = self.undo.pop() {
            match old {
                Some(v) => self.rows.insert(k, v),
                None => self.rows.remove(&k),
            };
        }
    }
}

/// Implements [`Journal`] for a struct by forwarding to each of its journaled fields.
macro_rules! journal {
    ($t:ty: $($field:ident),* $(,)?) => {
        impl $crate::table::Journal for $t {
            fn keep(&mut self) {
                $($crate::table::Journal::keep(&mut self.$field);)*
            }
            fn undo(&mut self) {
                $($crate::table::Journal::undo(&mut self.$field);)*
            }
        }
    };
}
pub(crate) use journal;

/// A number that only grows (the last position handed out), put back with the unit.
#[derive(Debug, Default)]
pub(crate) struct Counter {
    last: u64,
    saved: Option<u64>,
}

impl Counter {
    /// The next number.
    pub(crate) fn next(&mut self) -> u64 {
        self.saved.get_or_insert(self.last);
        self.last += 1;
        self.last
    }
}

impl Journal for Counter {
    fn keep(&mut self) {
        self.saved = None;
    }

    fn undo(&mut self) {
        if let Some(v) = self.saved.take() {
            self.last = v;
        }
    }
}
