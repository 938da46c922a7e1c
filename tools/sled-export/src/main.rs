//! `lama-sled-export`: the only code that still reads sled, kept out of lama-tui so sled and
//! its unmaintained dependencies are not in lama-tui's build. lama-tui runs it once, when it
//! finds a store written by its sled releases (0.1), and reads the stream it prints.
//!
//! ```text
//! lama-sled-export export STORE_DIR   # every tree of the sled store, as a stream on stdout
//! lama-sled-export import STORE_DIR   # a stream on stdin into a new sled store (tests, bench)
//! ```
//!
//! The stream (all integers big-endian):
//! ```text
//! "LAMA-SLED-EXPORT/1\n"
//! per tree: b'T'  name_len:u16  name  count:u64
//!           count × ( key_len:u32  key  value_len:u32  value )
//! end:      b'E'
//! ```
//! Trees come in name order; each tree's records in key order (sled's order, bytewise).
//! sled's own default tree is left out.
//!
//! Exit status: 0 done; 2 usage; 3 the store is in use by another process; 4 the store cannot
//! be read (damaged, or not a sled store); 5 another I/O error (stdout closed, disk full).
//! The reason is one line on stderr.

#![forbid(unsafe_code)]

use std::io::{BufReader, BufWriter, Read, Write};
use std::process::ExitCode;

const MAGIC: &[u8] = b"LAMA-SLED-EXPORT/1\n";
const USAGE: u8 = 2;
const LOCKED: u8 = 3;
const UNREADABLE: u8 = 4;
const IO: u8 = 5;
/// Longest key or value the stream carries (sled's own limit is far above any record lama-tui
/// wrote; this bounds what `import` allocates for a damaged stream).
const MAX_LEN: u32 = 64 * 1024 * 1024;

struct Fail(u8, String);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [cmd, dir] if cmd == "export" => export(dir),
        [cmd, dir] if cmd == "import" => import(dir),
        _ => Err(Fail(
            USAGE,
            "usage: lama-sled-export export|import STORE_DIR".into(),
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, why)) => {
            eprintln!("lama-sled-export: {why}");
            ExitCode::from(code)
        }
    }
}

fn io_fail(e: std::io::Error) -> Fail {
    Fail(IO, e.to_string())
}

fn sled_fail(dir: &str, e: sled::Error) -> Fail {
    match e {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            Fail(LOCKED, format!("{dir} is in use by another process"))
        }
        sled::Error::Io(io) => Fail(IO, format!("{dir}: {io}")),
        other => Fail(UNREADABLE, format!("{dir} cannot be read: {other}")),
    }
}

/// Open the store; sled 0.34 can panic on a damaged one, which is an answer, not a crash.
fn open(dir: &str, create: bool) -> Result<sled::Db, Fail> {
    if !create && !std::path::Path::new(dir).join("conf").exists() {
        return Err(Fail(
            UNREADABLE,
            format!("{dir} holds no sled store (no conf file)"),
        ));
    }
    let cfg = sled::Config::new()
        .path(dir)
        .cache_capacity(32 * 1024 * 1024)
        .create_new(create);
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || cfg.open()));
    let _ = std::panic::take_hook();
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(sled_fail(dir, e)),
        Err(_) => Err(Fail(
            UNREADABLE,
            format!("{dir} cannot be read: sled failed on open"),
        )),
    }
}

fn export(dir: &str) -> Result<(), Fail> {
    let db = open(dir, false)?;
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    out.write_all(MAGIC).map_err(io_fail)?;
    let mut names: Vec<Vec<u8>> = db
        .tree_names()
        .into_iter()
        .map(|n| n.to_vec())
        .filter(|n| n.as_slice() != b"__sled__default")
        .collect();
    names.sort();
    for name in names {
        let tree = db.open_tree(&name).map_err(|e| sled_fail(dir, e))?;
        let count = tree.len() as u64;
        let name_len = u16::try_from(name.len()).map_err(|_| {
            Fail(
                UNREADABLE,
                format!("{dir}: a tree name of {} bytes", name.len()),
            )
        })?;
        out.write_all(b"T").map_err(io_fail)?;
        out.write_all(&name_len.to_be_bytes()).map_err(io_fail)?;
        out.write_all(&name).map_err(io_fail)?;
        out.write_all(&count.to_be_bytes()).map_err(io_fail)?;
        let mut written = 0u64;
        for kv in tree.iter() {
            let (k, v) = kv.map_err(|e| sled_fail(dir, e))?;
            for part in [k.as_ref(), v.as_ref()] {
                out.write_all(&(part.len() as u32).to_be_bytes())
                    .map_err(io_fail)?;
                out.write_all(part).map_err(io_fail)?;
            }
            written += 1;
        }
        if written != count {
            let name = String::from_utf8_lossy(&name);
            return Err(Fail(
                UNREADABLE,
                format!("{dir}: tree {name} listed {written} records but counted {count}"),
            ));
        }
    }
    out.write_all(b"E").map_err(io_fail)?;
    out.flush().map_err(io_fail)
}

fn read_exact<R: Read>(r: &mut R, n: usize) -> Result<Vec<u8>, Fail> {
    let mut buf = vec![0u8; n];
    r.read_exact(&mut buf)
        .map_err(|e| Fail(UNREADABLE, format!("the stream on stdin ends early: {e}")))?;
    Ok(buf)
}

fn read_u<R: Read, const N: usize>(r: &mut R) -> Result<[u8; N], Fail> {
    let mut buf = [0u8; N];
    r.read_exact(&mut buf)
        .map_err(|e| Fail(UNREADABLE, format!("the stream on stdin ends early: {e}")))?;
    Ok(buf)
}

fn read_part<R: Read>(r: &mut R) -> Result<Vec<u8>, Fail> {
    let len = u32::from_be_bytes(read_u(r)?);
    if len > MAX_LEN {
        return Err(Fail(
            UNREADABLE,
            format!("a record of {len} bytes in the stream"),
        ));
    }
    read_exact(r, len as usize)
}

fn import(dir: &str) -> Result<(), Fail> {
    let mut r = BufReader::with_capacity(1 << 20, std::io::stdin().lock());
    if read_exact(&mut r, MAGIC.len())? != MAGIC {
        return Err(Fail(
            UNREADABLE,
            "stdin is not a lama-sled-export stream".into(),
        ));
    }
    let db = open(dir, true)?;
    loop {
        match read_u::<_, 1>(&mut r)?[0] {
            b'E' => break,
            b'T' => {
                let name_len = u16::from_be_bytes(read_u(&mut r)?);
                let name = read_exact(&mut r, name_len as usize)?;
                let count = u64::from_be_bytes(read_u(&mut r)?);
                let tree = db.open_tree(name).map_err(|e| sled_fail(dir, e))?;
                for _ in 0..count {
                    let k = read_part(&mut r)?;
                    let v = read_part(&mut r)?;
                    tree.insert(k, v).map_err(|e| sled_fail(dir, e))?;
                }
            }
            other => {
                return Err(Fail(
                    UNREADABLE,
                    format!("an unknown tag {other} in the stream"),
                ));
            }
        }
    }
    db.flush().map_err(|e| sled_fail(dir, e))?;
    Ok(())
}
