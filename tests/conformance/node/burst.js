#!/usr/bin/env node
// Bursts far past a link's credit with the real SDKs, driven by test_amqp_credit.py: every
// send is started at once and only then awaited, so the SDK (rhea underneath) holds what the
// server's credit does not let through yet and sends it as the server's flows grant more.
// Trust comes from NODE_EXTRA_CA_CERTS=<ca.pem>.
//
//   node burst.js telemetry --connection-string CS --count N [--ws]
//       azure-iot-device Client over Amqp (AmqpWs with --ws): N sendEvent calls at once,
//       message ids `burst-{i}`, property i={i}.
//   node burst.js c2d --devices D1,D2,… --per P
//       azure-iothub Client ($IRONHUB_CONNECTION_STRING): P sends to each device at once,
//       message ids `{device}-{j}`.
// Prints {"sent": n, "failed": [{"id": …, "error": …}, …]}.
'use strict';

const { parseArgs } = require('node:util');
const { Client: DeviceClient, Message } = require('azure-iot-device');
const { Amqp, AmqpWs } = require('azure-iot-device-amqp');
const { Client: ServiceClient } = require('azure-iothub');
const { Message: ServiceMessage } = require('azure-iot-common');

const { errorJson, finish, fail } = require('./output');

async function all(sends) {
  const results = await Promise.allSettled(sends.map(([, send]) => send()));
  const failed = [];
  results.forEach((r, i) => {
    if (r.status === 'rejected') failed.push({ id: sends[i][0], error: errorJson(r.reason) });
  });
  return { sent: results.length - failed.length, failed };
}

async function telemetry(args) {
  const client = DeviceClient.fromConnectionString(args['connection-string'], args.ws ? AmqpWs : Amqp);
  await client.open();
  const sends = [];
  for (let i = 0; i < Number(args.count); i++) {
    const message = new Message(JSON.stringify({ i }));
    message.messageId = `burst-${i}`;
    message.properties.add('i', String(i));
    sends.push([message.messageId, () => client.sendEvent(message)]);
  }
  const out = await all(sends);
  await client.close();
  return out;
}

async function c2d(args) {
  const client = ServiceClient.fromConnectionString(process.env.IRONHUB_CONNECTION_STRING);
  await client.open();
  const sends = [];
  for (const device of args.devices.split(',')) {
    for (let j = 0; j < Number(args.per); j++) {
      const message = new ServiceMessage(`c2d ${j}`);
      message.messageId = `${device}-${j}`;
      sends.push([message.messageId, () => client.send(device, message)]);
    }
  }
  const out = await all(sends);
  await client.close();
  return out;
}

async function main() {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      'connection-string': { type: 'string' },
      count: { type: 'string' },
      ws: { type: 'boolean' },
      devices: { type: 'string' },
      per: { type: 'string' },
    },
  });
  const commands = { telemetry, c2d };
  const command = commands[positionals[0]];
  if (!command) throw new Error(`unknown command ${positionals[0]}`);
  finish(await command(values));
}

main().catch(fail);
