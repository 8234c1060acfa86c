// Print the Khronos glTF validator's JSON report for one .glb/.gltf file (or stdin with "-").
// Exit 0 when the report was written, whatever it found: the caller reads the counts.
// Usage: node tools/validate_gltf.mjs FILE
import { readFileSync } from "node:fs";
import { validateBytes, version } from "gltf-validator";

const path = process.argv[2];
if (!path) {
  console.error("usage: node tools/validate_gltf.mjs FILE|-");
  process.exit(2);
}
const data = new Uint8Array(readFileSync(path === "-" ? 0 : path));
try {
  // maxIssues 0: every issue, so a count in the report is the whole count.
  const report = await validateBytes(data, { uri: path, maxIssues: 0, writeTimestamp: false });
  report.validatorVersion = version();
  process.stdout.write(JSON.stringify(report, null, 2) + "\n");
} catch (error) {
  // A rejection: the bytes are neither glTF nor GLB.
  console.error(String(error));
  process.exit(1);
}
