//! edgestate guest SDK for Rust: safe wrappers over the host ABI of import
//! module `edgestate` (specified in schemas/host-abi.json, explained in
//! docs/modules.md).
//!
//! `no_std` by default: every call works on buffers the caller owns, and a
//! panic logs through `log` at level error before trapping (its message with
//! feature `panic-message`). Feature `alloc` links std for `Vec`-returning
//! helpers; its panics log the whole message too.
//!
//! ```ignore
//! use edgestate::{Doc, OrStatus, Result};
//! fn run() -> Result<()> {
//!     let doc = Doc::open("counters").or_status(2)?;
//!     let total = doc.incr("visits", 1).or_status(3)?;
//!     edgestate::output(edgestate::format_i64(total, &mut [0u8; 20]));
//!     Ok(())
//! }
//! edgestate::entry!(run);
//! ```
//!
//! Build (rustc alone, no Cargo needed):
//! `rustc --target wasm32-unknown-unknown --crate-type rlib -C opt-level=z -C panic=abort src/lib.rs`, then
//! `rustc --target wasm32-unknown-unknown --crate-type cdylib -C opt-level=z -C panic=abort -C lto
//!  -C strip=symbols -C link-arg=-zstack-size=65536 --extern edgestate=libedgestate.rlib mod.rs`
//! (or `edgestate build`, which does exactly that).
#![no_std]

#[cfg(feature = "alloc")]
extern crate std;

/// The raw imports, exactly as schemas/host-abi.json declares them.
pub mod raw {
    #[link(wasm_import_module = "edgestate")]
    extern "C" {
        pub fn doc_open(name_ptr: *const u8, name_len: usize) -> i32;
        pub fn kv_get(doc: i32, key_ptr: *const u8, key_len: usize, out_ptr: *mut u8, out_cap: usize) -> i32;
        pub fn kv_set(doc: i32, key_ptr: *const u8, key_len: usize, val_ptr: *const u8, val_len: usize) -> i32;
        pub fn kv_delete(doc: i32, key_ptr: *const u8, key_len: usize) -> i32;
        pub fn kv_incr(doc: i32, key_ptr: *const u8, key_len: usize, delta: i64, out_ptr: *mut i64) -> i32;
        pub fn kv_scan(doc: i32, prefix_ptr: *const u8, prefix_len: usize, cursor_ptr: *const u8, cursor_len: usize, out_ptr: *mut u8, out_cap: usize) -> i32;
        pub fn input_len() -> i32;
        pub fn input_read(out_ptr: *mut u8, out_cap: usize) -> i32;
        pub fn output_write(ptr: *const u8, len: usize) -> i32;
        pub fn log(level: i32, ptr: *const u8, len: usize);
        pub fn now_ms() -> i64;
    }
}

/// A failed call: the ABI's negative codes, a buffer too small for what the
/// host has (retry with `needed` bytes), or a status the module chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    NotFound,
    AccessDenied,
    UnknownDocument,
    BadHandle,
    InvalidKey,
    ValueTooLarge,
    WrongType,
    InvalidCursor,
    LimitExceeded,
    InvalidArgument,
    /// A negative code this SDK does not know (a newer host).
    Unknown(i32),
    /// The value, page or input is `needed` bytes: call again with a buffer that big.
    BufferTooSmall { needed: usize },
    /// Return this status from the entry (non-zero: nothing commits).
    Status(i32),
}

impl Error {
    /// The error a negative ABI return stands for.
    pub fn from_code(rc: i32) -> Error {
        match rc {
            -1 => Error::NotFound,
            -2 => Error::AccessDenied,
            -3 => Error::UnknownDocument,
            -4 => Error::BadHandle,
            -5 => Error::InvalidKey,
            -6 => Error::ValueTooLarge,
            -7 => Error::WrongType,
            -8 => Error::InvalidCursor,
            -9 => Error::LimitExceeded,
            -10 => Error::InvalidArgument,
            other => Error::Unknown(other),
        }
    }

    /// The entry status for this error: `Status(n)` is `n`; an ABI error is
    /// 100 minus its code (NotFound 101 .. InvalidArgument 110), so a caller
    /// can tell which call failed without a log line.
    pub fn status(self) -> i32 {
        match self {
            Error::Status(n) => n,
            Error::BufferTooSmall { .. } => 111,
            Error::Unknown(_) => 112,
            e => 100 - e.code(),
        }
    }

    /// The ABI code (negative) of an ABI error, 0 for the SDK's own variants.
    pub fn code(self) -> i32 {
        match self {
            Error::NotFound => -1,
            Error::AccessDenied => -2,
            Error::UnknownDocument => -3,
            Error::BadHandle => -4,
            Error::InvalidKey => -5,
            Error::ValueTooLarge => -6,
            Error::WrongType => -7,
            Error::InvalidCursor => -8,
            Error::LimitExceeded => -9,
            Error::InvalidArgument => -10,
            Error::Unknown(c) => c,
            _ => 0,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;

/// Replace any error by a status of the module's choosing: `doc.get(..).or_status(3)?`.
pub trait OrStatus<T> {
    /// `Err(Error::Status(status))` for any error.
    fn or_status(self, status: i32) -> Result<T>;
}

impl<T> OrStatus<T> for Result<T> {
    fn or_status(self, status: i32) -> Result<T> {
        self.map_err(|_| Error::Status(status))
    }
}

/// A non-negative return as a length, or the error a negative one stands for.
pub fn check(rc: i32) -> Result<usize> {
    if rc >= 0 {
        Ok(rc as usize)
    } else {
        Err(Error::from_code(rc))
    }
}

fn filled(n: usize, buf: &mut [u8]) -> Result<&mut [u8]> {
    if n > buf.len() {
        return Err(Error::BufferTooSmall { needed: n });
    }
    Ok(&mut buf[..n])
}

/// A document handle from [`Doc::open`]; valid for this invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Doc(pub i32);

impl Doc {
    /// Keys may be `&str` or bytes: the host checks they are UTF-8 (else `InvalidKey`).
    /// Open a document the manifest grants (the same handle for the same name).
    pub fn open(name: &str) -> Result<Doc> {
        let rc = unsafe { raw::doc_open(name.as_ptr(), name.len()) };
        check(rc).map(|_| Doc(rc))
    }

    /// The value of `key` copied into `buf`, or `None` if absent. A value
    /// longer than `buf` is `BufferTooSmall { needed }` (length or retry).
    pub fn get<'a>(self, key: impl AsRef<[u8]>, buf: &'a mut [u8]) -> Result<Option<&'a mut [u8]>> {
        let key = key.as_ref();
        let rc = unsafe { raw::kv_get(self.0, key.as_ptr(), key.len(), buf.as_mut_ptr(), buf.len()) };
        match check(rc) {
            Ok(n) => filled(n, buf).map(Some),
            Err(Error::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stage `value` under `key` (visible to this invocation's later calls).
    pub fn set(self, key: impl AsRef<[u8]>, value: &[u8]) -> Result<()> {
        let key = key.as_ref();
        check(unsafe { raw::kv_set(self.0, key.as_ptr(), key.len(), value.as_ptr(), value.len()) }).map(|_| ())
    }

    /// Stage the deletion of `key` (also fine when absent).
    pub fn delete(self, key: impl AsRef<[u8]>) -> Result<()> {
        let key = key.as_ref();
        check(unsafe { raw::kv_delete(self.0, key.as_ptr(), key.len()) }).map(|_| ())
    }

    /// Add `delta` to the counter at `key`; returns its new total.
    pub fn incr(self, key: impl AsRef<[u8]>, delta: i64) -> Result<i64> {
        let key = key.as_ref();
        let mut total: i64 = 0;
        check(unsafe { raw::kv_incr(self.0, key.as_ptr(), key.len(), delta, &mut total) })?;
        Ok(total)
    }

    /// One page of keys under `prefix` as msgpack `[keys, next_cursor | nil]`
    /// in `buf`; an empty `cursor` starts the scan. See [`Page`] to read it.
    pub fn scan<'a>(self, prefix: impl AsRef<[u8]>, cursor: &[u8], buf: &'a mut [u8]) -> Result<&'a mut [u8]> {
        let prefix = prefix.as_ref();
        let rc = unsafe {
            raw::kv_scan(self.0, prefix.as_ptr(), prefix.len(), cursor.as_ptr(), cursor.len(), buf.as_mut_ptr(), buf.len())
        };
        let n = check(rc)?;
        filled(n, buf)
    }

    /// The value of `key` in a new `Vec` (retrying with the length the host
    /// reports), or `None` if absent.
    #[cfg(feature = "alloc")]
    pub fn get_vec(self, key: impl AsRef<[u8]>) -> Result<Option<std::vec::Vec<u8>>> {
        let key = key.as_ref();
        let mut buf = std::vec![0u8; 256];
        loop {
            match self.get(key, &mut buf) {
                Ok(Some(v)) => {
                    let n = v.len();
                    buf.truncate(n);
                    return Ok(Some(buf));
                }
                Ok(None) => return Ok(None),
                Err(Error::BufferTooSmall { needed }) => buf.resize(needed, 0),
                Err(e) => return Err(e),
            }
        }
    }
}

/// One decoded scan page: the keys (msgpack str) and the cursor of the next page.
pub struct Page<'a> {
    rest: &'a [u8],
    remaining: u32,
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if data.len() < n {
        return Err(Error::InvalidArgument);
    }
    let (head, tail) = data.split_at(n);
    *data = tail;
    Ok(head)
}

fn be(bytes: &[u8]) -> usize {
    bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize)
}

impl<'a> Page<'a> {
    /// Read the header of a page [`Doc::scan`] returned.
    pub fn parse(page: &'a [u8]) -> Result<Page<'a>> {
        let mut rest = page;
        let tag = take(&mut rest, 2)?;
        // msgpack fixarray of 2, then the keys array header.
        if tag[0] != 0x92 {
            return Err(Error::InvalidArgument);
        }
        let remaining = match tag[1] {
            t @ 0x90..=0x9f => (t & 0x0f) as u32,
            0xdc => be(take(&mut rest, 2)?) as u32,
            0xdd => be(take(&mut rest, 4)?) as u32,
            _ => return Err(Error::InvalidArgument),
        };
        Ok(Page { rest, remaining })
    }

    /// The next key of the page, or `None` after the last.
    pub fn next_key(&mut self) -> Result<Option<&'a str>> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        let tag = take(&mut self.rest, 1)?[0];
        let n = match tag {
            t @ 0xa0..=0xbf => (t & 0x1f) as usize,
            0xd9 => be(take(&mut self.rest, 1)?),
            0xda => be(take(&mut self.rest, 2)?),
            _ => return Err(Error::InvalidArgument),
        };
        let bytes = take(&mut self.rest, n)?;
        core::str::from_utf8(bytes).map(Some).map_err(|_| Error::InvalidArgument)
    }

    /// After every key: the next page's cursor, or `None` on the last page.
    pub fn cursor(&self) -> Result<Option<&'a [u8]>> {
        if self.remaining != 0 {
            return Err(Error::InvalidArgument);
        }
        let mut rest = self.rest;
        let tag = take(&mut rest, 1)?[0];
        let n = match tag {
            0xc0 => return Ok(None),
            0xc4 => be(take(&mut rest, 1)?),
            0xc5 => be(take(&mut rest, 2)?),
            _ => return Err(Error::InvalidArgument),
        };
        take(&mut rest, n).map(Some)
    }
}

/// Length of the invocation's input.
pub fn input_len() -> usize {
    unsafe { raw::input_len() as usize }
}

/// The invocation's input copied into `buf` (`BufferTooSmall` if it does not fit).
pub fn input(buf: &mut [u8]) -> Result<&mut [u8]> {
    let n = check(unsafe { raw::input_read(buf.as_mut_ptr(), buf.len()) })?;
    filled(n, buf)
}

/// The whole input in a new `Vec`.
#[cfg(feature = "alloc")]
pub fn input_vec() -> std::vec::Vec<u8> {
    let mut buf = std::vec![0u8; input_len()];
    let n = unsafe { raw::input_read(buf.as_mut_ptr(), buf.len()) };
    buf.truncate(n.max(0) as usize);
    buf
}

/// Append `bytes` to the output (past the manifest's limit the invocation traps).
pub fn output(bytes: &[u8]) {
    unsafe {
        raw::output_write(bytes.as_ptr(), bytes.len());
    }
}

/// Log levels of `log`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Level {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
}

/// One log line (truncated at 1 KiB by the host, at most 64 per invocation).
pub fn log(level: Level, message: &str) {
    unsafe { raw::log(level as i32, message.as_ptr(), message.len()) }
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    unsafe { raw::now_ms() }
}

/// Decimal text of `n` in `buf` (20 bytes always suffice), no `core::fmt` needed.
pub fn format_i64(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

/// A fixed buffer that `core::fmt` writes into, cut at its capacity.
pub struct Line<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Line<N> {
    /// An empty line.
    pub const fn new() -> Self {
        Line { buf: [0; N], len: 0 }
    }
    /// Append bytes (what does not fit is dropped).
    pub fn push(&mut self, bytes: &[u8]) -> &mut Self {
        let n = bytes.len().min(N - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        self
    }
    /// What was written.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl<const N: usize> AsRef<[u8]> for Line<N> {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl<const N: usize> Default for Line<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> core::fmt::Write for Line<N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

fn log_bytes(level: Level, bytes: &[u8]) {
    unsafe { raw::log(level as i32, bytes.as_ptr(), bytes.len()) }
}

// Without std a panic would be a bare `unreachable` trap with its message lost.
// Reading the PanicInfo at all keeps core's format_args (and its number
// formatting) alive at every bounds check, several KB per module; so by
// default one fixed line is logged, and feature `panic-message` logs the whole
// message and location (about +7 KB). With `alloc`, std's hook does it.
#[cfg(all(not(feature = "alloc"), target_arch = "wasm32"))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    #[cfg(feature = "panic-message")]
    {
        use core::fmt::Write;
        let mut line = Line::<512>::new();
        let _ = write!(line, "{}", info);
        log_bytes(Level::Error, line.as_bytes());
    }
    #[cfg(not(feature = "panic-message"))]
    {
        let _ = info;
        log_bytes(Level::Error, b"panicked (build with feature panic-message for the message)");
    }
    core::arch::wasm32::unreachable()
}

/// With std linked (feature `alloc`), panics go through std's hook: this one
/// logs the full message. [`entry!`] installs it on the first call.
#[cfg(feature = "alloc")]
pub fn install_panic_hook() {
    use core::fmt::Write;
    std::panic::set_hook(std::boxed::Box::new(|info| {
        let mut line = Line::<1024>::new();
        let _ = write!(line, "{}", info);
        log_bytes(Level::Error, line.as_bytes());
    }));
}

#[doc(hidden)]
pub fn __run(f: fn() -> Result<()>) -> i32 {
    #[cfg(feature = "alloc")]
    install_panic_hook();
    match f() {
        Ok(()) => 0,
        Err(e) => e.status(),
    }
}

/// Export `handle` (or the name given) calling `f: fn() -> Result<()>`:
/// `Ok` returns 0 (the writes commit), `Err(e)` returns `e.status()`.
///
/// `edgestate::entry!(run);` or `edgestate::entry!(run, export = my_entry);`
#[macro_export]
macro_rules! entry {
    ($f:path) => {
        $crate::entry!($f, export = handle);
    };
    ($f:path, export = $name:ident) => {
        #[no_mangle]
        pub extern "C" fn $name() -> i32 {
            $crate::__run($f)
        }
    };
}
