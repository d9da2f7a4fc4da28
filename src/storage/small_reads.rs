//! Many small objects read whole at once (a listing's sidecars and signatures): the cache
//! first, then every miss fetched concurrently inside the runtime, at most
//! `small_read_concurrency` in flight. A cold listing is round trips, not bytes; one blocking
//! call per request left it waiting on them a few at a time.
//!
//! Each object gets exactly what [`Destination::read_listed`] gives it: the same size limits
//! checked before and after the read, the same errors, the same cache entries. An object listed
//! larger than [`SMALL`] (a sidecar may be up to 64 MiB) is read alone, after the batch, so
//! the bytes in flight stay bounded by `SMALL` times the bound, whatever the destination holds.

use anyhow::Result;

use super::destination::{Destination, Object};

/// The most bytes an object may be listed with to be read in the concurrent batch.
const SMALL: u64 = 1 << 20;

impl Destination {
    /// Each of `wanted` (an object as listed, and the most bytes it may hold), read whole;
    /// results in `wanted`'s order.
    pub fn read_listed_many(&self, wanted: &[(&Object, u64)]) -> Vec<Result<Vec<u8>>> {
        let mut out: Vec<Option<Result<Vec<u8>>>> = wanted
            .iter()
            .map(|(obj, limit)| {
                if let Some(body) = self.cache.as_ref().and_then(|c| c.get(obj)) {
                    return Some(Ok(body));
                }
                self.refuse_oversized(&obj.name, obj.size, *limit)
                    .err()
                    .map(Err)
            })
            .collect();
        let (missing, large): (Vec<usize>, Vec<usize>) = (0..wanted.len())
            .filter(|&i| out[i].is_none())
            .partition(|&i| wanted[i].0.size <= SMALL);
        // A view of the past reads versions, SFTP checks its folder first: both one at a time,
        // as before (neither is a listing's cold path at scale).
        let one_by_one = self.view.is_some() || self.sftp.is_some() || missing.len() < 2;
        if one_by_one {
            for i in missing {
                let (obj, limit) = wanted[i];
                out[i] = Some(self.read_listed(obj, limit));
            }
        } else {
            let paths: Vec<&str> = missing.iter().map(|&i| wanted[i].0.name.as_str()).collect();
            let fetched =
                self.link
                    .call_many("reading", &paths, self.small_read_concurrency, |path| {
                        let path = path.to_string();
                        async move { self.op.read(&path).await }
                    });
            for (i, got) in missing.into_iter().zip(fetched) {
                let (obj, limit) = wanted[i];
                out[i] = Some(got.and_then(|buf| {
                    self.refuse_overlong(&obj.name, buf.len() as u64, limit)?;
                    let body = buf.to_vec();
                    if let Some(cache) = &self.cache {
                        cache.put(obj, &body);
                    }
                    Ok(body)
                }));
            }
        }
        for i in large {
            let (obj, limit) = wanted[i];
            out[i] = Some(self.read_listed(obj, limit));
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| Err(anyhow::anyhow!("a small read was not made"))))
            .collect()
    }

    /// litevault never writes a small object this large: it is damaged or not ours.
    pub(super) fn refuse_oversized(&self, path: &str, size: u64, limit: u64) -> Result<()> {
        if size > limit {
            return Err(crate::exit::integrity(format!(
                "{}: {size} bytes, more than the {limit} expected",
                self.link.ctx("reading", path),
            ))
            .into());
        }
        Ok(())
    }

    /// What came was longer than listed: it changed in between, and is refused all the same.
    pub(super) fn refuse_overlong(&self, path: &str, read: u64, limit: u64) -> Result<()> {
        if read > limit {
            return Err(crate::exit::integrity(format!(
                "{}: more than the {limit} bytes expected",
                self.link.ctx("reading", path),
            ))
            .into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::destination::Setup;

    #[test]
    fn each_object_comes_back_in_order_with_its_own_limit_and_error() {
        let dest = Destination::in_memory("mem", "h", Setup::default());
        let large = vec![7u8; (SMALL + 1) as usize];
        for (name, body) in [
            ("a.json", b"first".to_vec()),
            ("b.json", b"second".to_vec()),
            ("c.json", large.clone()),
            ("d.json", b"fourth".to_vec()),
        ] {
            dest.put(name, body).unwrap();
        }
        let listed = dest.list("").unwrap();
        let obj = |name: &str| listed.iter().find(|o| o.name == name).unwrap().clone();
        let gone = Object {
            name: "gone.json".into(),
            size: 3,
            version: None,
        };
        let (a, b, c, d) = (obj("a.json"), obj("b.json"), obj("c.json"), obj("d.json"));
        let got = dest.read_listed_many(&[
            (&a, 1 << 20),
            (&c, 64 << 20),
            (&gone, 1 << 20),
            (&b, 3),
            (&d, 1 << 20),
        ]);
        assert_eq!(got[0].as_deref().unwrap(), b"first");
        // Over SMALL: read alone, after the batch, all the same.
        assert_eq!(got[1].as_deref().unwrap(), &large[..]);
        assert!(got[2].is_err(), "a listed object that is gone is an error");
        // Listed over its limit: refused before any request, as damage.
        let refused = got[3].as_ref().unwrap_err();
        assert_eq!(crate::exit::classify(refused), crate::exit::Exit::Integrity);
        assert!(format!("{refused:#}").contains("more than the 3 expected"));
        assert_eq!(got[4].as_deref().unwrap(), b"fourth");
    }
}
