//! Counter: adds 1 to the counter named by the input (default "visits") in
//! document "counters" and outputs its new total in decimal.
const es = @import("edgestate.zig");

export fn handle() i32 {
    var key_buf: [128]u8 = undefined;
    var key: []const u8 = es.input(&key_buf) catch return 1;
    if (key.len == 0) key = "visits";
    const doc = es.Doc.open("counters") catch return 2;
    const total = doc.incr(key, 1) catch return 3;
    var out: [24]u8 = undefined;
    es.output(es.formatInt(total, &out));
    return 0;
}
