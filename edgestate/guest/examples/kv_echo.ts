// Key-value echo over document "kv". Input "key=value" stores value under key;
// input "key" alone reads it. Either way the output is the value read back
// (read-your-own-writes: a value set here is visible before it commits).
import { Doc, ErrorCode, input, lastError, output } from "edgestate-sdk";

export function handle(): i32 {
  const data = input();
  if (data.length > 4096) return 1;
  const split = data.indexOf(0x3d); // '='
  const key = split < 0 ? data : data.subarray(0, split);
  const doc = Doc.open("kv");
  if (doc == null) return 2;
  if (split >= 0 && doc.setBytes(key, data.subarray(split + 1)) < 0) return 3;
  const value = doc.getBytes(key);
  if (value == null) return lastError == ErrorCode.NOT_FOUND ? 5 : 4;
  output(value);
  return 0;
}
