// Validates pipeline YAML files against schemas/pipeline.schema.json (JSON
// Schema 2020-12) with Ajv. Run by tests/contract/gates.sh from the folder
// where `npm ci` installed ajv and yaml.
//   node validate_pipelines.mjs SCHEMA [--expect-invalid] FILE...
// Exit 0 when every file is valid (with --expect-invalid: when every file is
// refused); each problem is printed as file: path: message.
import fs from "node:fs";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import YAML from "yaml";

const args = process.argv.slice(2);
const schemaPath = args.shift();
const expectInvalid = args[0] === "--expect-invalid";
if (expectInvalid) args.shift();
if (!schemaPath || args.length === 0) {
  console.error("usage: validate_pipelines.mjs SCHEMA [--expect-invalid] FILE...");
  process.exit(2);
}

// strictRequired off: anyOf [{required: [min]}, {required: [max]}] names
// properties defined beside it, which that check does not look for.
const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false, allowUnionTypes: true });
addFormats(ajv);
const validate = ajv.compile(JSON.parse(fs.readFileSync(schemaPath, "utf8")));

let wrong = 0;
for (const file of args) {
  const doc = YAML.parseDocument(fs.readFileSync(file, "utf8"));
  if (doc.errors.length > 0) {
    console.log(`${file}: not YAML: ${doc.errors[0].message}`);
    if (!expectInvalid) wrong++;
    continue;
  }
  const ok = validate(doc.toJS());
  for (const e of validate.errors ?? []) {
    const extra = e.params?.additionalProperty ? ` '${e.params.additionalProperty}'` : "";
    console.log(`${file}: ${e.instancePath || "(top)"}: ${e.message}${extra}`);
  }
  if (ok && !expectInvalid) console.log(`${file}: valid`);
  if (ok === expectInvalid) {
    wrong++;
    if (expectInvalid) console.log(`${file}: accepted, but the schema should refuse it`);
  }
}
console.log(`${args.length - wrong} passed, ${wrong} failed`);
process.exit(wrong === 0 ? 0 : 1);
