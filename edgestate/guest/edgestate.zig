//! edgestate guest SDK for Zig: thin, allocation-free wrappers over the host ABI.
//! The ABI itself is specified in schemas/host-abi.json and docs/modules.md.
//!
//!     const es = @import("edgestate.zig");
//!     export fn handle() i32 {
//!         const doc = es.Doc.open("counters") catch return 1;
//!         const n = doc.incr("visits", 1) catch return 2;
//!         ...
//!     }
//!
//! or write `fn run() es.Error!void` and `export fn handle() i32 { return es.run(run); }`.
//!
//! Build with `edgestate build`, or by hand:
//!     python -m ziglang build-exe mod.zig -target wasm32-freestanding -fno-entry \
//!         -rdynamic -O ReleaseSmall -fstrip --stack 65536 -femit-bin=mod.wasm
//! The stack size matters: Zig's default 1 MiB stack makes the module start
//! with 17 memory pages, more than most manifests' memory_pages allow.

/// Negative statuses of the host ABI, plus BufferTooSmall (a value or page
/// longer than the buffer given: retry with a buffer of `needed` bytes).
pub const Error = error{
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
    BufferTooSmall,
    Unknown,
};

/// The entry status for an error: 100 minus its ABI code (NotFound 101 ..
/// InvalidArgument 110), BufferTooSmall 111, Unknown 112: as the Rust SDK.
pub fn status(e: Error) i32 {
    return switch (e) {
        error.NotFound => 101,
        error.AccessDenied => 102,
        error.UnknownDocument => 103,
        error.BadHandle => 104,
        error.InvalidKey => 105,
        error.ValueTooLarge => 106,
        error.WrongType => 107,
        error.InvalidCursor => 108,
        error.LimitExceeded => 109,
        error.InvalidArgument => 110,
        error.BufferTooSmall => 111,
        error.Unknown => 112,
    };
}

/// Run `f` as the entry: 0 (commit) when it succeeds, `status(err)` when it fails.
pub fn run(comptime f: fn () Error!void) i32 {
    f() catch |e| return status(e);
    return 0;
}

pub const raw = struct {
    pub extern "edgestate" fn doc_open(name_ptr: [*]const u8, name_len: usize) i32;
    pub extern "edgestate" fn kv_get(doc: i32, key_ptr: [*]const u8, key_len: usize, out_ptr: [*]u8, out_cap: usize) i32;
    pub extern "edgestate" fn kv_set(doc: i32, key_ptr: [*]const u8, key_len: usize, val_ptr: [*]const u8, val_len: usize) i32;
    pub extern "edgestate" fn kv_delete(doc: i32, key_ptr: [*]const u8, key_len: usize) i32;
    pub extern "edgestate" fn kv_incr(doc: i32, key_ptr: [*]const u8, key_len: usize, delta: i64, out_ptr: *i64) i32;
    pub extern "edgestate" fn kv_scan(doc: i32, prefix_ptr: [*]const u8, prefix_len: usize, cursor_ptr: [*]const u8, cursor_len: usize, out_ptr: [*]u8, out_cap: usize) i32;
    pub extern "edgestate" fn input_len() i32;
    pub extern "edgestate" fn input_read(out_ptr: [*]u8, out_cap: usize) i32;
    pub extern "edgestate" fn output_write(ptr: [*]const u8, len: usize) i32;
    pub extern "edgestate" fn log(level: i32, ptr: [*]const u8, len: usize) void;
    pub extern "edgestate" fn now_ms() i64;
};

/// A non-negative status as a length, or the error a negative one stands for.
pub fn check(rc: i32) Error!usize {
    if (rc >= 0) return @intCast(rc);
    return switch (rc) {
        -1 => error.NotFound,
        -2 => error.AccessDenied,
        -3 => error.UnknownDocument,
        -4 => error.BadHandle,
        -5 => error.InvalidKey,
        -6 => error.ValueTooLarge,
        -7 => error.WrongType,
        -8 => error.InvalidCursor,
        -9 => error.LimitExceeded,
        -10 => error.InvalidArgument,
        else => error.Unknown,
    };
}

pub const Doc = struct {
    handle: i32,

    /// Open a document granted by the manifest.
    pub fn open(name: []const u8) Error!Doc {
        const rc = raw.doc_open(name.ptr, name.len);
        _ = try check(rc);
        return .{ .handle = rc };
    }

    /// The value of `key` copied into `buf`, or null if absent.
    pub fn get(self: Doc, key: []const u8, buf: []u8) Error!?[]u8 {
        const n = check(raw.kv_get(self.handle, key.ptr, key.len, buf.ptr, buf.len)) catch |e| {
            if (e == error.NotFound) return null;
            return e;
        };
        if (n > buf.len) return error.BufferTooSmall;
        return buf[0..n];
    }

    pub fn set(self: Doc, key: []const u8, value: []const u8) Error!void {
        _ = try check(raw.kv_set(self.handle, key.ptr, key.len, value.ptr, value.len));
    }

    pub fn delete(self: Doc, key: []const u8) Error!void {
        _ = try check(raw.kv_delete(self.handle, key.ptr, key.len));
    }

    /// Add `delta` to the counter at `key`; returns its new total.
    pub fn incr(self: Doc, key: []const u8, delta: i64) Error!i64 {
        var total: i64 = 0;
        _ = try check(raw.kv_incr(self.handle, key.ptr, key.len, delta, &total));
        return total;
    }

    /// One page of keys under `prefix` as msgpack `[keys, next_cursor | nil]`.
    /// Pass an empty `cursor` for the first page.
    pub fn scan(self: Doc, prefix: []const u8, cursor: []const u8, buf: []u8) Error![]u8 {
        const n = try check(raw.kv_scan(self.handle, prefix.ptr, prefix.len, cursor.ptr, cursor.len, buf.ptr, buf.len));
        if (n > buf.len) return error.BufferTooSmall;
        return buf[0..n];
    }
};

/// The invocation's input copied into `buf`.
pub fn input(buf: []u8) Error![]u8 {
    const n = try check(raw.input_read(buf.ptr, buf.len));
    if (n > buf.len) return error.BufferTooSmall;
    return buf[0..n];
}

/// Append `bytes` to the invocation's output (past the manifest's limit, the invocation traps).
pub fn output(bytes: []const u8) void {
    _ = raw.output_write(bytes.ptr, bytes.len);
}

pub const Level = enum(i32) { trace = 0, debug = 1, info = 2, warn = 3, err = 4 };

pub fn log(level: Level, message: []const u8) void {
    raw.log(@intFromEnum(level), message.ptr, message.len);
}

pub fn nowMs() i64 {
    return raw.now_ms();
}

/// `parts` one after the other in `buf` (a key like id ++ ":hits"); cut at `buf.len`.
pub fn join(buf: []u8, parts: []const []const u8) []u8 {
    var n: usize = 0;
    for (parts) |part| {
        const take = @min(part.len, buf.len - n);
        @memcpy(buf[n .. n + take], part[0..take]);
        n += take;
    }
    return buf[0..n];
}

/// Decimal text of `n` written into `buf` (no allocator, no std needed).
pub fn formatInt(n: i64, buf: []u8) []u8 {
    var tmp: [20]u8 = undefined;
    var i: usize = tmp.len;
    var v: u64 = if (n < 0) @intCast(-(n + 1)) else @intCast(n);
    if (n < 0) v += 1;
    while (true) {
        i -= 1;
        tmp[i] = @intCast('0' + v % 10);
        v /= 10;
        if (v == 0) break;
    }
    var len: usize = 0;
    if (n < 0) {
        buf[0] = '-';
        len = 1;
    }
    const digits = tmp[i..];
    @memcpy(buf[len .. len + digits.len], digits);
    return buf[0 .. len + digits.len];
}
