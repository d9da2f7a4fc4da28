//! Where backups are stored: one [`Destination`] type over Apache OpenDAL serves every backend,
//! so commands never know which backend they talk to.

pub mod as_of;
pub mod bucket;
pub mod cache;
mod content_md5;
pub mod credentials;
pub mod destination;
pub mod fanout;
pub mod link;
pub mod object;
mod open;
pub mod ranged;
pub mod requests;
pub mod root;
pub mod runtime;
pub mod sftp_session;
mod small_reads;
pub mod spool;
pub mod upload;
pub mod url;

pub use destination::Destination;
