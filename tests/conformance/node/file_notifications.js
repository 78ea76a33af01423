#!/usr/bin/env node
// File upload notifications through the real `azure-iothub` Client's
// getFileNotificationReceiver (AMQP, `/messages/serviceBound/filenotifications`), driven by
// test_file_upload.py. The service connection string is $IRONHUB_CONNECTION_STRING; trust
// comes from NODE_EXTRA_CA_CERTS=<ca.pem>.
//
//   node file_notifications.js --settle complete|abandon[,…]
//       Client.open, getFileNotificationReceiver, then takes one notification for each
//       settlement named, in order, settling it so (`complete` or `abandon`). Prints
//       {"received": [{"notification": <the parsed body>, "contentType", "messageId",
//       "deliveryCount", "settled"}, …]}, or {"receiverError": …} when the client cannot
//       open or the receiver cannot attach.
'use strict';

const { parseArgs } = require('node:util');
const { Client } = require('azure-iothub');

const { errorJson, finish, fail } = require('./output');

function settle(call) {
  return new Promise((resolve) => call((err, result) => resolve(err ? { err } : { ok: result })));
}

async function main() {
  const { values } = parseArgs({ options: { settle: { type: 'string', default: 'complete' } } });
  const settlements = values.settle.split(',');
  const client = Client.fromConnectionString(process.env.IRONHUB_CONNECTION_STRING);
  const opened = await settle((cb) => client.open(cb));
  if (opened.err) finish({ receiverError: errorJson(opened.err) });
  const receiver = await settle((cb) => client.getFileNotificationReceiver(cb));
  if (receiver.err) finish({ receiverError: errorJson(receiver.err) });
  const queue = [];
  const waiting = [];
  receiver.ok.on('message', (msg) => {
    const resolve = waiting.shift();
    if (resolve) resolve(msg);
    else queue.push(msg);
  });
  const errored = new Promise((resolve) => receiver.ok.on('error', (err) => resolve({ err })));
  const received = [];
  for (const how of settlements) {
    const msg = await Promise.race([
      queue.length ? Promise.resolve(queue.shift()) : new Promise((resolve) => waiting.push(resolve)),
      errored,
    ]);
    if (msg.err) finish({ receiverError: errorJson(msg.err), received });
    const done = await settle((cb) => receiver.ok[how](msg, cb));
    if (done.err) throw done.err;
    const count = msg.properties.getValue('iothub-deliverycount');
    received.push({
      notification: JSON.parse(msg.data.toString()),
      contentType: msg.contentType,
      messageId: msg.messageId,
      deliveryCount: count === undefined ? null : count,
      settled: how,
    });
  }
  await settle((cb) => client.close(cb));
  finish({ received });
}

main().catch(fail);
