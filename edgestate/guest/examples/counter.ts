// Counter: adds 1 to the counter named by the input (default "visits") in
// document "counters" and outputs its new total in decimal.
import { Doc, bytes, input, lastError, outputString } from "edgestate-sdk";

export function handle(): i32 {
  let key = input();
  if (key.length > 128) return 1;
  if (key.length == 0) key = bytes("visits");
  const doc = Doc.open("counters");
  if (doc == null) return 2;
  const total = doc.incrBytes(key, 1);
  if (lastError < 0) return 3;
  outputString(total.toString());
  return 0;
}
