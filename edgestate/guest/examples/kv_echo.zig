//! Key-value echo over document "kv". Input "key=value" stores value under key;
//! input "key" alone reads it. Either way the output is the value read back
//! (read-your-own-writes: a value set here is visible before it commits).
const es = @import("edgestate.zig");

export fn handle() i32 {
    var in_buf: [4096]u8 = undefined;
    const in = es.input(&in_buf) catch return 1;
    var split: usize = in.len;
    for (in, 0..) |c, i| {
        if (c == '=') {
            split = i;
            break;
        }
    }
    const key = in[0..split];
    const doc = es.Doc.open("kv") catch return 2;
    if (split < in.len) doc.set(key, in[split + 1 ..]) catch return 3;
    var val_buf: [4096]u8 = undefined;
    const value = doc.get(key, &val_buf) catch return 4;
    if (value) |v| es.output(v) else return 5;
    return 0;
}
