// An off-the-shelf Yjs client for tests/sync/test_yjs_endpoint.py.
// Usage: node client.mjs ws://127.0.0.1:PORT/yjs DOC [TOKEN]
// Speaks JSON lines: prints {"event":"synced","root":{...}} once synced, writes
// root["from-js"] = [1,2,3], then prints {"event":"seen","key":K,"value":[...]}
// for every key that appears afterwards; exits when stdin closes.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const [serverUrl, room, token] = process.argv.slice(2)
const doc = new Y.Doc()
const root = doc.getMap('root')
const provider = new WebsocketProvider(serverUrl, room, doc, {
  WebSocketPolyfill: WebSocket,
  params: token ? { token } : {},
})

const dump = () => Object.fromEntries([...root.entries()].map(([k, v]) => [k, Array.from(v)]))
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

provider.once('sync', (synced) => {
  say({ event: 'synced', root: dump() })
  root.observe((event) => {
    for (const key of event.keysChanged) {
      if (event.transaction.local) continue
      const value = root.get(key)
      say({ event: 'seen', key, value: value === undefined ? null : Array.from(value) })
    }
  })
  root.set('from-js', new Uint8Array([1, 2, 3]))
})

process.stdin.on('data', () => {})
process.stdin.on('end', () => {
  provider.destroy()
  process.exit(0)
})
