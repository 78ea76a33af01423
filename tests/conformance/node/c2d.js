#!/usr/bin/env node
// The service side of cloud-to-device messaging with the real `azure-iothub` Client, which
// speaks AMQP only (port 5671), driven by test_amqp_c2d.py. The service connection string is
// $IRONHUB_CONNECTION_STRING; trust comes from NODE_EXTRA_CA_CERTS=<ca.pem>.
//
//   node c2d.js send --device-id D --text T [--ack full|positive|negative|none] [--feedback]
//       Client.open, Client.send(D, Message(T) with a message id, correlation id and the
//       property colour=blue): prints the send's result; with --feedback, then waits on
//       getFeedbackReceiver for a batch naming that message id, completes it and prints the
//       batch's records.
'use strict';

const { parseArgs } = require('node:util');
const { Client } = require('azure-iothub');
const { Message } = require('azure-iot-common');

const { errorJson, finish, fail } = require('./output');

function settle(call) {
  return new Promise((resolve) => call((err, result) => resolve(err ? { err } : { ok: result })));
}

async function send(args) {
  const client = Client.fromConnectionString(process.env.IRONHUB_CONNECTION_STRING);
  const opened = await settle((cb) => client.open(cb));
  if (opened.err) throw opened.err;
  const message = new Message(args.text);
  message.messageId = `node-${Date.now()}`;
  message.correlationId = 'node-correlation';
  message.ack = args.ack || 'none';
  message.properties.add('colour', 'blue');
  let feedback;
  if (args.feedback) {
    const receiver = await settle((cb) => client.getFeedbackReceiver(cb));
    if (receiver.err) throw receiver.err;
    feedback = new Promise((resolve) => {
      receiver.ok.on('message', (msg) => {
        const records = JSON.parse(msg.data.toString());
        if (records.some((r) => r.originalMessageId === message.messageId)) {
          receiver.ok.complete(msg, () => resolve({ contentType: msg.contentType, records }));
        } else {
          receiver.ok.complete(msg, () => {});
        }
      });
    });
  }
  const sent = await settle((cb) => client.send(args['device-id'], message, cb));
  const out = { messageId: message.messageId };
  if (sent.err) {
    out.sendError = errorJson(sent.err);
  } else {
    out.sent = sent.ok && sent.ok.constructor ? sent.ok.constructor.name : null;
    if (feedback) out.feedback = await feedback;
  }
  await settle((cb) => client.close(cb));
  return out;
}

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    'device-id': { type: 'string' },
    text: { type: 'string' },
    ack: { type: 'string' },
    feedback: { type: 'boolean' },
  },
});

({ send })[positionals[0]](values).then(finish, fail);
