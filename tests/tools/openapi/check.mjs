// check.mjs - tests/e2e/test_openapi.sh's checker, run by node from a directory where npm ci
// installed package.json's validator. argv[2]: an OpenAPI document. Prints "document valid"
// or "document invalid" and the validator's errors; then, for each line "NAME JSON" of
// standard input, "NAME accepted" or "NAME refused": whether the document's Event schema
// (what POST /v1/events takes) takes that event.
import { readFileSync } from "node:fs";
import { Validator } from "@seriousme/openapi-schema-validator";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const doc = JSON.parse(readFileSync(process.argv[2], "utf8"));
const result = await new Validator().validate(doc);
console.log(result.valid ? "document valid" : "document invalid");
if (!result.valid) {
    console.log(JSON.stringify(result.errors));
}
const ajv = new Ajv2020({ strict: false });
addFormats(ajv);
ajv.addSchema(doc, "doc");
const event = ajv.getSchema("doc#/components/schemas/Event");
for (const line of readFileSync(0, "utf8").split("\n")) {
    const space = line.indexOf(" ");
    if (space > 0) {
        const name = line.slice(0, space);
        console.log(name + (event(JSON.parse(line.slice(space + 1))) ? " accepted" : " refused"));
    }
}
