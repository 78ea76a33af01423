#!/usr/bin/env node
// Import and export jobs with the real Node.js service SDK (`azure-iothub` Registry), driven by
// test_import_export.py. The service connection string is $IRONHUB_CONNECTION_STRING; trust
// comes from NODE_EXTRA_CA_CERTS=<ca.pem>. Prints one JSON object as `output.js` says.
//
//   node import_export.js export --container URI [--exclude-keys]
//       Registry.exportDevicesToBlob(URI, excludeKeys), then getJob until the job is over
//       (bounded): prints the created job, the final job and the ids listJobs returns.
//   node import_export.js import --input URI --output URI
//       Registry.importDevicesFromBlob(input, output), the same way.
'use strict';

const { parseArgs } = require('node:util');

const { finish, fail } = require('./output');

const WAIT_MS = 30000;

function registry() {
  const cs = process.env.IRONHUB_CONNECTION_STRING;
  if (!cs) throw new Error('IRONHUB_CONNECTION_STRING is not set');
  return require('azure-iothub').Registry.fromConnectionString(cs);
}

async function untilOver(client, jobId) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    // getJob and the create calls resolve with the body itself, listJobs with {responseBody, …}.
    const job = await client.getJob(jobId);
    if (['completed', 'failed', 'cancelled'].includes(job.status)) return job;
    if (Date.now() > deadline) throw new Error(`job ${jobId} still ${job.status}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function run(created, client) {
  const job = await untilOver(client, created.jobId);
  const listed = (await client.listJobs()).responseBody.map((j) => j.jobId);
  finish({ created, job, listed });
}

async function exportDevices(argv) {
  const { values } = parseArgs({
    args: argv,
    options: { container: { type: 'string' }, 'exclude-keys': { type: 'boolean', default: false } },
  });
  const client = registry();
  const created = await client.exportDevicesToBlob(values.container, values['exclude-keys']);
  await run(created, client);
}

async function importDevices(argv) {
  const { values } = parseArgs({ args: argv, options: { input: { type: 'string' }, output: { type: 'string' } } });
  const client = registry();
  const created = await client.importDevicesFromBlob(values.input, values.output);
  await run(created, client);
}

const [command, ...rest] = process.argv.slice(2);
const commands = { export: exportDevices, import: importDevices };
if (!commands[command]) fail(new Error(`unknown command ${command}`));
commands[command](rest).catch(fail);
