//! Session store over document "sessions". Input: a session id. Per request it
//! reads the session's data and preferences, counts the hit, stamps
//! last-seen and appends a marker to the data (kept to 256 bytes); the output
//! is "hits=N bytes=M".
const es = @import("edgestate.zig");

fn key(buf: []u8, id: []const u8, suffix: []const u8) []const u8 {
    @memcpy(buf[0..id.len], id);
    @memcpy(buf[id.len .. id.len + suffix.len], suffix);
    return buf[0 .. id.len + suffix.len];
}

export fn handle() i32 {
    var id_buf: [64]u8 = undefined;
    const id = es.input(&id_buf) catch return 1;
    if (id.len == 0) return 1;
    const doc = es.Doc.open("sessions") catch return 2;
    var k: [96]u8 = undefined;

    var data_buf: [300]u8 = undefined;
    var data_len: usize = 0;
    if (doc.get(key(&k, id, ":data"), &data_buf) catch return 3) |d| data_len = d.len;
    var prefs_buf: [256]u8 = undefined;
    _ = doc.get(key(&k, id, ":prefs"), &prefs_buf) catch return 3;

    const hits = doc.incr(key(&k, id, ":hits"), 1) catch return 4;
    const now: i64 = es.nowMs();
    doc.set(key(&k, id, ":last_seen"), @as([*]const u8, @ptrCast(&now))[0..8]) catch return 5;
    if (data_len >= 256) data_len = 0;
    data_buf[data_len] = '.';
    data_len += 1;
    doc.set(key(&k, id, ":data"), data_buf[0..data_len]) catch return 5;

    var out: [64]u8 = undefined;
    var n: usize = 0;
    for ("hits=") |c| {
        out[n] = c;
        n += 1;
    }
    n += es.formatInt(hits, out[n..]).len;
    for (" bytes=") |c| {
        out[n] = c;
        n += 1;
    }
    n += es.formatInt(@intCast(data_len), out[n..]).len;
    es.output(out[0..n]);
    return 0;
}
