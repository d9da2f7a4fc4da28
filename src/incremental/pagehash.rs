//! BLAKE3 of a database file, built from one hash per page.
//!
//! BLAKE3 is a tree: every aligned, power-of-two run of 1 KiB chunks is a subtree with its own
//! chaining value. A SQLite page (a power of two of at least 1 KiB) at its place in the file is
//! exactly such a subtree, so hashing each page once gives both what an incremental backup
//! compares (the page's chaining value) and what every manifest records (the whole file's
//! BLAKE3, equal to `b3sum`'s), without a second pass over the bytes. Restoring a chain keeps the
//! chaining values of the database being rebuilt, replaces those of the pages each link writes,
//! and merges them again to check the link's after-hash in a fraction of a second, without
//! reading the file back.
//!
//! Pages of 512 bytes are smaller than a chunk and have no chaining value of their own: such a
//! database is always stored whole.

use blake3::hazmat::{
    merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};

/// The smallest page with a chaining value of its own (one BLAKE3 chunk).
pub const MIN_PAGE: u32 = 1024;

/// Whether pages of this size can be hashed (and so compared) one by one.
pub fn supported(page_size: u32) -> bool {
    page_size >= MIN_PAGE && page_size.is_power_of_two() && page_size <= 65536
}

/// The chaining value of page `index` (0-based) of `data.len()`-byte pages.
pub fn page_cv(index: u64, data: &[u8]) -> ChainingValue {
    let mut h = blake3::Hasher::new();
    h.set_input_offset(index * data.len() as u64);
    h.update(data);
    h.finalize_non_root()
}

/// Merges chaining values of equal-sized leaves, left to right, into the root hash; memory is one
/// value per level (a stack of at most 64).
#[derive(Default)]
pub struct Tree {
    stack: Vec<ChainingValue>,
    /// The newest leaf, held back: only once another follows is it known not to be the root's
    /// right edge.
    pending: Option<ChainingValue>,
    leaves: u64,
    /// The root when the file is a single page: one leaf has no parent to merge into.
    single: Option<blake3::Hash>,
}

impl Tree {
    pub fn new() -> Tree {
        Tree::default()
    }

    /// Add the next leaf. `first_page` is the page's bytes when this is the first leaf, so a
    /// file of one page (whose root is not a merge) still gets its hash.
    pub fn push(&mut self, cv: ChainingValue, first_page: Option<&[u8]>) {
        if self.leaves == 0 {
            self.single = first_page.map(blake3::hash);
        }
        if let Some(prev) = self.pending.take() {
            self.merge_to(self.leaves - 1);
            self.stack.push(prev);
        }
        self.pending = Some(cv);
        self.leaves += 1;
    }

    /// Before leaf number `t` (0-based) joins, the stack holds one complete subtree per set bit
    /// of `t`, largest first: BLAKE3's left-balanced tree.
    fn merge_to(&mut self, t: u64) {
        while self.stack.len() > t.count_ones() as usize {
            let right = self.stack.pop().expect("stack holds two");
            let left = self.stack.pop().expect("stack holds two");
            self.stack
                .push(merge_subtrees_non_root(&left, &right, Mode::Hash));
        }
    }

    /// The BLAKE3 of the whole file.
    pub fn root(mut self) -> blake3::Hash {
        let Some(mut right) = self.pending.take() else {
            return blake3::hash(b"");
        };
        if self.stack.is_empty() {
            return self
                .single
                .expect("the first page's bytes come with the first leaf");
        }
        self.merge_to(self.leaves - 1);
        while self.stack.len() > 1 {
            let left = self.stack.pop().expect("non-empty");
            right = merge_subtrees_non_root(&left, &right, Mode::Hash);
        }
        let left = self.stack.pop().expect("non-empty");
        merge_subtrees_root(&left, &right, Mode::Hash)
    }
}

/// The root of a file whose pages have these chaining values; `single` gives the hash of page 1
/// when there is only one page.
pub fn root_of(cvs: &[ChainingValue], single: impl FnOnce() -> blake3::Hash) -> blake3::Hash {
    if cvs.len() == 1 {
        return single();
    }
    let mut tree = Tree::new();
    for cv in cvs {
        tree.push(*cv, None);
    }
    tree.root()
}

/// Hashes a byte stream of whole pages as it passes, cut anywhere: the file's BLAKE3, and when
/// asked, every page's chaining value.
pub struct PageHasher {
    page_size: usize,
    partial: Vec<u8>,
    index: u64,
    tree: Tree,
    keep: Option<Vec<ChainingValue>>,
}

impl PageHasher {
    pub fn new(page_size: u32, keep_cvs: bool) -> PageHasher {
        debug_assert!(supported(page_size));
        PageHasher {
            page_size: page_size as usize,
            partial: Vec::new(),
            index: 0,
            tree: Tree::new(),
            keep: keep_cvs.then(Vec::new),
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        if !self.partial.is_empty() {
            let take = (self.page_size - self.partial.len()).min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() == self.page_size {
                let page = std::mem::take(&mut self.partial);
                self.page(&page);
            }
        }
        while data.len() >= self.page_size {
            let (page, rest) = data.split_at(self.page_size);
            self.page(page);
            data = rest;
        }
        self.partial.extend_from_slice(data);
    }

    fn page(&mut self, page: &[u8]) {
        let cv = page_cv(self.index, page);
        self.tree.push(cv, (self.index == 0).then_some(page));
        if let Some(keep) = &mut self.keep {
            keep.push(cv);
        }
        self.index += 1;
    }

    /// The file's BLAKE3 and the kept chaining values; `None` when the stream did not end on a
    /// page boundary (it is not a database of this page size).
    pub fn finish(self) -> Option<(blake3::Hash, Vec<ChainingValue>)> {
        if !self.partial.is_empty() {
            return None;
        }
        Some((self.tree.root(), self.keep.unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(pages: usize, page_size: usize) -> Vec<u8> {
        (0..pages * page_size)
            .map(|i| (i * 7 + i / 1000) as u8)
            .collect()
    }

    #[test]
    fn the_page_tree_gives_the_files_blake3() {
        for page_size in [1024usize, 4096, 65536] {
            for pages in [0usize, 1, 2, 3, 4, 5, 7, 8, 9, 31, 33] {
                if page_size == 65536 && pages > 9 {
                    continue;
                }
                let bytes = file(pages, page_size);
                let want = blake3::hash(&bytes);
                // Fed in odd cuts, as a tar entry arrives.
                let mut h = PageHasher::new(page_size as u32, true);
                for piece in bytes.chunks(1000) {
                    h.update(piece);
                }
                let (root, cvs) = h.finish().expect("whole pages");
                assert_eq!(root, want, "{pages} pages of {page_size}");
                assert_eq!(cvs.len(), pages);
                let again = root_of(&cvs, || blake3::hash(&bytes[..page_size.min(bytes.len())]));
                assert_eq!(again, want, "{pages} pages of {page_size} from the values");
            }
        }
    }

    #[test]
    fn a_changed_page_changes_its_value_and_the_root() {
        let mut bytes = file(6, 4096);
        let mut h = PageHasher::new(4096, true);
        h.update(&bytes);
        let (before, cvs) = h.finish().unwrap();
        bytes[4096 * 3 + 17] ^= 1;
        let mut cvs2 = cvs.clone();
        cvs2[3] = page_cv(3, &bytes[4096 * 3..4096 * 4]);
        assert_ne!(cvs2[3], cvs[3]);
        assert_eq!(cvs2[2], cvs[2]);
        let after = root_of(&cvs2, || unreachable!());
        assert_ne!(after, before);
        assert_eq!(after, blake3::hash(&bytes));
        // The same bytes at another page number are another value: pages are compared in place.
        assert_ne!(page_cv(2, &bytes[..4096]), page_cv(0, &bytes[..4096]));
    }

    #[test]
    fn a_stream_that_ends_mid_page_is_not_a_database() {
        let mut h = PageHasher::new(1024, false);
        h.update(&[0u8; 1500]);
        assert!(h.finish().is_none());
        assert!(!supported(512) && supported(1024) && supported(65536) && !supported(3000));
    }
}
