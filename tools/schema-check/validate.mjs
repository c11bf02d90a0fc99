// Validates JSON documents against a JSON Schema (draft-07) with ajv: the schemas dcm ships
// in docs/schema/ against what dcm prints (`plan --json`, `show --json`, `drift --json`).
// Usage: node validate.mjs SCHEMA.json DOCUMENT.json...
// Prints one line per document ("DOC: valid", or each error as "DOC: /path: message") and
// exits 1 when any document is invalid, 2 on a usage or schema error.
import { readFileSync } from "node:fs";
import Ajv from "ajv";

const [schemaPath, ...docs] = process.argv.slice(2);
if (!schemaPath || docs.length === 0) {
  console.error("usage: node validate.mjs SCHEMA.json DOCUMENT.json...");
  process.exit(2);
}
let validate;
try {
  // strict: a schema with an unknown keyword or a mistake ajv can see is an error, not ignored.
  const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false });
  validate = ajv.compile(JSON.parse(readFileSync(schemaPath, "utf8")));
} catch (e) {
  console.error(`${schemaPath}: not a usable schema: ${e.message}`);
  process.exit(2);
}
let invalid = 0;
for (const path of docs) {
  let doc;
  try {
    doc = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    console.log(`${path}: not JSON: ${e.message}`);
    invalid += 1;
    continue;
  }
  if (validate(doc)) {
    console.log(`${path}: valid`);
  } else {
    invalid += 1;
    for (const e of validate.errors) {
      console.log(`${path}: ${e.instancePath || "/"}: ${e.message} ${JSON.stringify(e.params)}`);
    }
  }
}
console.log(`${docs.length - invalid} valid, ${invalid} invalid`);
process.exit(invalid > 0 ? 1 : 0);
