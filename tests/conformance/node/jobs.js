#!/usr/bin/env node
// Scheduled jobs with the real Node.js service SDK (`azure-iothub` JobClient), driven by
// test_jobs.py. The service connection string is $IRONHUB_CONNECTION_STRING; trust comes from
// NODE_EXTRA_CA_CERTS=<ca.pem>. Prints one JSON object as `output.js` says.
//
//   node jobs.js twin-update --job-id J --condition C --patch JSON
//       JobClient.scheduleTwinUpdate(J, C, patch), then getJob(J) until the job is over
//       (bounded): prints the scheduled job, the final job, and the ids of the jobs
//       createQuery('scheduleUpdateTwin', 'completed', 1) pages through with the number of pages.
'use strict';

const { parseArgs } = require('node:util');

const { finish, fail } = require('./output');

const WAIT_MS = 30000;

function jobClient() {
  const cs = process.env.IRONHUB_CONNECTION_STRING;
  if (!cs) throw new Error('IRONHUB_CONNECTION_STRING is not set');
  return require('azure-iothub').JobClient.fromConnectionString(cs);
}

async function twinUpdate(argv) {
  const { values } = parseArgs({
    args: argv,
    options: { 'job-id': { type: 'string' }, condition: { type: 'string' }, patch: { type: 'string' } },
  });
  const client = jobClient();
  const jobId = values['job-id'];
  const scheduled = await client.scheduleTwinUpdate(jobId, values.condition, JSON.parse(values.patch));
  const deadline = Date.now() + WAIT_MS;
  let job;
  for (;;) {
    job = (await client.getJob(jobId)).jobStatus;
    if (['completed', 'failed', 'cancelled'].includes(job.status)) break;
    if (Date.now() > deadline) throw new Error(`job ${jobId} still ${job.status}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const query = client.createQuery('scheduleUpdateTwin', 'completed', 1);
  const ids = [];
  let pages = 0;
  while (query.hasMoreResults) {
    // With a promise (no callback), next() forgets the query's own token: pass it.
    const page = (await query.next(query.continuationToken)).result;
    pages += 1;
    for (const item of page.items) ids.push(item.jobId);
    if (pages > 50) throw new Error('paging does not end');
  }
  finish({ scheduled: scheduled.jobStatus, job, queried: ids, pages });
}

const [command, ...rest] = process.argv.slice(2);
const commands = { 'twin-update': twinUpdate };
if (!commands[command]) fail(new Error(`unknown command ${command}`));
commands[command](rest).catch(fail);
