// Reads Coldstation's exports with the libraries other wallets embed, and prints what they
// saw as one JSON line (tests/interop/test_other_wallets.py compares it with the truth):
//   bbqr (Coinkite, what COLDCARD Q speaks), @ngraveio/bc-ur (UR multipart),
//   @keystonehq/bc-ur-registry (crypto-account / crypto-hdkey / crypto-output).
// Input on stdin: {"bbqr": [parts], "urs": {"name": [ur part, ...]}}.
import { createRequire } from "node:module";
import { joinQRs } from "bbqr";

const require = createRequire(import.meta.url);
const { URDecoder } = require("@ngraveio/bc-ur");
const registry = require("@keystonehq/bc-ur-registry");

function readUR(parts) {
  const decoder = new URDecoder();
  for (const part of parts) decoder.receivePart(part);
  if (!decoder.isComplete() || !decoder.isSuccess()) throw new Error("UR did not complete");
  return decoder.resultUR();
}

function describeHDKey(key) {
  const origin = key.getOrigin();
  return {
    xpub: key.getBip32Key(),
    source_fingerprint: origin ? origin.getSourceFingerprint().toString("hex") : null,
    path: origin ? origin.getPath() : null,
  };
}

const decoders = {
  "crypto-account": (cbor) => {
    const account = registry.CryptoAccount.fromCBOR(cbor);
    return {
      master_fingerprint: account.getMasterFingerprint().toString("hex"),
      outputs: account.getOutputDescriptors().map((o) => ({
        text: o.toString(),
        key: describeHDKey(o.getHDKey()),
      })),
    };
  },
  "crypto-hdkey": (cbor) => describeHDKey(registry.CryptoHDKey.fromCBOR(cbor)),
  "crypto-output": (cbor) => {
    const output = registry.CryptoOutput.fromCBOR(cbor);
    return { text: output.toString(), key: describeHDKey(output.getHDKey()) };
  },
  "crypto-psbt": (cbor) => ({ psbt: registry.CryptoPSBT.fromCBOR(cbor).getPSBT().toString("hex") }),
};

let input = "";
for await (const chunk of process.stdin) input += chunk;
const { bbqr = [], urs = {} } = JSON.parse(input);
const out = { urs: {} };
if (bbqr.length) {
  const joined = joinQRs(bbqr);
  out.bbqr = { file_type: joined.fileType, hex: Buffer.from(joined.raw).toString("hex") };
}
for (const [name, parts] of Object.entries(urs)) {
  try {
    const ur = readUR(parts);
    const decode = decoders[ur.type];
    out.urs[name] = decode ? { type: ur.type, value: decode(ur.cbor) } : { type: ur.type };
  } catch (error) {
    out.urs[name] = { error: String(error && error.message ? error.message : error) };
  }
}
process.stdout.write(JSON.stringify(out) + "\n");
