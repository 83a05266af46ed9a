//! The name of a shard's job log: each shard writes its own file, so that
//! shards never write one file and a rerun of a shard resumes its own
//! slice.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// The job log of shard `index` of `count` for the log named `path`:
/// `I-of-N` replaces each `%s` in it, or else comes before the file's
/// extension (`run.log` becomes `run.2-of-4.log`, `run` becomes
/// `run.2-of-4`). Without a shard, `path` itself.
pub fn for_shard(path: &Path, shard: Option<(u64, u64)>) -> PathBuf {
    let Some((index, count)) = shard else {
        return path.to_path_buf();
    };
    let tag = format!("{index}-of-{count}");
    let bytes = path.as_os_str().as_bytes();
    if bytes.windows(2).any(|pair| pair == b"%s") {
        let mut named = Vec::with_capacity(bytes.len() + tag.len());
        let mut rest = bytes;
        while let Some(at) = rest.windows(2).position(|pair| pair == b"%s") {
            named.extend_from_slice(&rest[..at]);
            named.extend_from_slice(tag.as_bytes());
            rest = &rest[at + 2..];
        }
        named.extend_from_slice(rest);
        return PathBuf::from(OsString::from_vec(named));
    }
    let (Some(stem), Some(extension)) = (path.file_stem(), path.extension()) else {
        let mut named = path.as_os_str().to_os_string();
        named.push(".");
        named.push(&tag);
        return PathBuf::from(named);
    };
    let mut name = stem.to_os_string();
    for part in [
        OsStr::new("."),
        OsStr::new(&tag),
        OsStr::new("."),
        extension,
    ] {
        name.push(part);
    }
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(path: &str, shard: Option<(u64, u64)>) -> String {
        for_shard(Path::new(path), shard).display().to_string()
    }

    #[test]
    fn a_shard_goes_before_the_extension_or_where_percent_s_says() {
        assert_eq!(named("run.log", Some((2, 4))), "run.2-of-4.log");
        assert_eq!(
            named("/shared/night/run.tsv", Some((0, 8))),
            "/shared/night/run.0-of-8.tsv"
        );
        assert_eq!(named("logs/run", Some((1, 2))), "logs/run.1-of-2");
        assert_eq!(named("a.b/.log", Some((1, 2))), "a.b/.log.1-of-2");
        assert_eq!(named("run-%s.log", Some((3, 8))), "run-3-of-8.log");
        assert_eq!(named("%s/run.%s", Some((0, 2))), "0-of-2/run.0-of-2");
    }

    #[test]
    fn without_a_shard_the_name_is_kept() {
        assert_eq!(named("run.log", None), "run.log");
        assert_eq!(named("run-%s.log", None), "run-%s.log");
    }
}
