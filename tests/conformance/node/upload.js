#!/usr/bin/env node
// File upload with the real Node.js device SDK, driven by test_file_upload.py:
//
//   node upload.js --device-cs DEVICE_CONNECTION_STRING --blob NAME --text TEXT
//
// azure-iot-device's Client.uploadToBlob(NAME, <a stream of TEXT>, length): it asks the hub
// for a SAS (POST /devices/{id}/files), uploads with @azure/storage-blob to
// https://{hostName}/{containerName}/{blobName}{sasToken}, and notifies the hub. Prints {"ok":
// true} and exits 0, or {"error": {...}} and exits 1. NODE_EXTRA_CA_CERTS holds both the hub's
// and the storage account's CA.
'use strict';

const { parseArgs } = require('node:util');
const { Readable } = require('node:stream');
const { Client } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

const DEADLINE_MS = 50000;

function fail(err) {
  const out = { class: err && err.constructor ? err.constructor.name : typeof err, name: err && err.name, message: err && err.message };
  if (err && err.response && err.response.statusCode !== undefined) out.statusCode = err.response.statusCode;
  process.stdout.write(JSON.stringify({ error: out }) + '\n');
  process.exit(1);
}

setTimeout(() => fail(Object.assign(new Error(`no answer within ${DEADLINE_MS} ms`), { name: 'ScriptTimeout' })), DEADLINE_MS).unref();
process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);

async function main() {
  const { values } = parseArgs({ options: { 'device-cs': { type: 'string' }, blob: { type: 'string' }, text: { type: 'string' } } });
  const data = Buffer.from(values.text);
  const client = Client.fromConnectionString(values['device-cs'], Mqtt);
  await client.uploadToBlob(values.blob, Readable.from([data]), data.length);
  await client.close();
  process.stdout.write(JSON.stringify({ ok: true }) + '\n');
  process.exit(0);
}

main().catch(fail);
