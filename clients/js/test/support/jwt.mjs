// HS256 connection tokens for the tests (node:crypto), as a backend would mint them.
import { createHmac } from "node:crypto";

export const SECRET = "pushgate-client-tests-secret-0123456789abcdef";

export function mintHs256(claims, secret = SECRET) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const head = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  const sig = createHmac("sha256", secret).update(head).digest("base64url");
  return `${head}.${sig}`;
}

export const nowSec = () => Math.floor(Date.now() / 1000);
