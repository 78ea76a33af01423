#!/usr/bin/env node
// The real Node.js Azure IoT SDKs, driven one call at a time by test_dps_node.py and
// test_dps_amqp.py.
//
// Every subcommand prints one JSON object on standard output and exits 0, or prints
// {"error": {...}} (the error's class, name, message and, for HTTP errors, status and body) and
// exits 1. Trust comes from NODE_EXTRA_CA_CERTS=<ca.pem>, as a user of these SDKs would set it.
//
//   node dps.js register --transport mqtt|mqttws|http|amqp|amqpws --host H --scope S --id R --key K [--payload JSON]
//       ProvisioningDeviceClient.create(H, S, new Mqtt()|new MqttWs()|new Http()|new Amqp()|new AmqpWs(),
//       new SymmetricKeySecurityClient(R, K)).register(cb): prints the registration state.
//       With --cert F --x509-key F instead of --key: azure-iot-security-x509's
//       X509Security(R, {cert, key}), the device's certificate (chain) and key in PEM files.
//   node dps.js send --hub H --device-id D --key K --text T [--transport mqtt|amqp]
//       azure-iot-device's Client.fromConnectionString("HostName=H;DeviceId=D;SharedAccessKey=K",
//       Mqtt (the default) or azure-iot-device-amqp's Amqp): open, sendEvent(new Message(T)),
//       close.
//   node dps.js service METHOD [JSON_ARG ...]
//       ProvisioningServiceClient.fromConnectionString($IRONHUB_DPS_CONNECTION_STRING)[METHOD](
//       ...args, callback): prints {"result", "statusCode"}. The callback form throughout: the
//       promise form of runBulkEnrollmentOperation never settles (an SDK bug).
//   node dps.js query FACTORY [JSON_ARG ...]
//       client[FACTORY](...args) (e.g. createIndividualEnrollmentQuery with a page size), then
//       query.next(cb) until hasMoreResults is false: prints {"pages": [...]}.
'use strict';

const { parseArgs } = require('node:util');

const { finish, fail } = require('./output');

function register(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      transport: { type: 'string' },
      host: { type: 'string' },
      scope: { type: 'string' },
      id: { type: 'string' },
      key: { type: 'string' },
      cert: { type: 'string' },
      'x509-key': { type: 'string' },
      payload: { type: 'string' },
    },
  });
  const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
  let transport;
  switch (values.transport) {
    case 'mqtt': transport = new (require('azure-iot-provisioning-device-mqtt').Mqtt)(); break;
    case 'mqttws': transport = new (require('azure-iot-provisioning-device-mqtt').MqttWs)(); break;
    case 'http': transport = new (require('azure-iot-provisioning-device-http').Http)(); break;
    case 'amqp': transport = new (require('azure-iot-provisioning-device-amqp').Amqp)(); break;
    case 'amqpws': transport = new (require('azure-iot-provisioning-device-amqp').AmqpWs)(); break;
    default: throw new Error(`unknown transport ${values.transport}`);
  }
  let security;
  if (values.cert !== undefined) {
    const { X509Security } = require('azure-iot-security-x509');
    const fs = require('node:fs');
    security = new X509Security(values.id, {
      cert: fs.readFileSync(values.cert, 'utf8'),
      key: fs.readFileSync(values['x509-key'], 'utf8'),
    });
  } else {
    const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
    security = new SymmetricKeySecurityClient(values.id, values.key);
  }
  const client = ProvisioningDeviceClient.create(values.host, values.scope, transport, security);
  if (values.payload !== undefined) client.setProvisioningPayload(JSON.parse(values.payload));
  client.register((err, result) => (err ? fail(err) : finish({ registrationState: result })));
}

function send(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      hub: { type: 'string' },
      'device-id': { type: 'string' },
      key: { type: 'string' },
      text: { type: 'string' },
      transport: { type: 'string', default: 'mqtt' },
    },
  });
  const { Client, Message } = require('azure-iot-device');
  let Transport;
  switch (values.transport) {
    case 'mqtt': Transport = require('azure-iot-device-mqtt').Mqtt; break;
    case 'amqp': Transport = require('azure-iot-device-amqp').Amqp; break;
    default: throw new Error(`unknown transport ${values.transport}`);
  }
  const cs = `HostName=${values.hub};DeviceId=${values['device-id']};SharedAccessKey=${values.key}`;
  const client = Client.fromConnectionString(cs, Transport);
  client.on('error', fail);
  client.open((err) => {
    if (err) return fail(err);
    client.sendEvent(new Message(values.text), (err, result) => {
      if (err) return fail(err);
      const sent = { sent: true, result: result && result.constructor ? result.constructor.name : null };
      client.close(() => finish(sent));
    });
  });
}

function serviceClient() {
  const cs = process.env.IRONHUB_DPS_CONNECTION_STRING;
  if (!cs) throw new Error('IRONHUB_DPS_CONNECTION_STRING is not set');
  const { ProvisioningServiceClient } = require('azure-iot-provisioning-service');
  return ProvisioningServiceClient.fromConnectionString(cs);
}

function service([method, ...jsonArgs]) {
  const client = serviceClient();
  if (typeof client[method] !== 'function') throw new Error(`no method ${method}`);
  const args = jsonArgs.map((a) => JSON.parse(a));
  client[method](...args, (err, result, response) => {
    if (err) return fail(err);
    finish({ result: result === undefined ? null : result, statusCode: response ? response.statusCode : null });
  });
}

function query([factory, ...jsonArgs]) {
  const client = serviceClient();
  const q = client[factory](...jsonArgs.map((a) => JSON.parse(a)));
  const pages = [];
  const nextPage = () => {
    q.next((err, items, response) => {
      if (err) return fail(err);
      pages.push({
        items,
        continuation: response.headers['x-ms-continuation'] === undefined ? null : response.headers['x-ms-continuation'],
        itemType: response.headers['x-ms-item-type'] === undefined ? null : response.headers['x-ms-item-type'],
      });
      if (q.hasMoreResults && pages.length < 100) nextPage();
      else finish({ pages, hasMoreResults: q.hasMoreResults });
    });
  };
  nextPage();
}

const commands = { register, send, service, query };
const [command, ...rest] = process.argv.slice(2);
if (!commands[command]) {
  fail(new Error(`usage: node dps.js ${Object.keys(commands).join('|')} ...`));
} else {
  try {
    commands[command](rest);
  } catch (err) {
    fail(err);
  }
}
