// A minimal gRPC unary call over node:http2 with hand-encoded protobuf, enough for the
// admin calls the tests make (pushgate.v1.Pushgate/Disconnect). No gRPC library.
import http2 from "node:http2";

function varint(n) {
  const out = [];
  let v = BigInt(n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return out;
}

export const field = {
  string: (no, s) => {
    const bytes = [...Buffer.from(s)];
    return [...varint((no << 3) | 2), ...varint(bytes.length), ...bytes];
  },
  varint: (no, n) => [...varint(no << 3), ...varint(n)],
};

/** Calls `method` with the message made of `fields`; resolves to the reply's bytes, rejects on a non-zero grpc-status. */
export function grpcUnary(addr, method, fields) {
  const body = Buffer.from(fields.flat());
  const frame = Buffer.alloc(5 + body.length);
  frame.writeUInt8(0, 0);
  frame.writeUInt32BE(body.length, 1);
  body.copy(frame, 5);
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://${addr}`);
    session.on("error", reject);
    const req = session.request({ ":method": "POST", ":path": method, "content-type": "application/grpc", te: "trailers" });
    const chunks = [];
    let status;
    let message = "";
    req.on("response", (headers) => {
      if (headers["grpc-status"] !== undefined) status = headers["grpc-status"];
    });
    req.on("trailers", (trailers) => {
      status = trailers["grpc-status"];
      message = trailers["grpc-message"] ?? "";
    });
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      session.close();
      if (String(status) !== "0") reject(new Error(`${method}: grpc-status ${status} ${decodeURIComponent(message)}`));
      else resolve(Buffer.concat(chunks).subarray(5));
    });
    req.on("error", reject);
    req.end(frame);
  });
}
