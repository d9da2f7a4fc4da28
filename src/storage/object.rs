//! What a listing says of one stored object: its name, size and version. Its own module so
//! that the cache and the destination can both use it without importing each other.

/// An object listed in the namespace folder.
#[derive(Debug, Clone)]
pub struct Object {
    pub name: String,
    pub size: u64,
    /// Its ETag, or else its modification time, when the backend says: what tells a rewritten
    /// object of the same size apart.
    pub version: Option<String>,
}

pub(super) fn version_of(meta: &opendal::Metadata) -> Option<String> {
    meta.etag()
        .map(str::to_string)
        .or_else(|| meta.last_modified().map(|t| t.to_string()))
}
