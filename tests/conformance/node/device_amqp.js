#!/usr/bin/env node
// A device on the real `azure-iot-device` Client over AMQP (`Amqp`, port 5671) or AMQP over
// WebSocket (`AmqpWs`, port 443), driven line by line by test_amqp_device.py (and a module on
// its ModuleClient, by test_amqp_modules.py). Trust comes from NODE_EXTRA_CA_CERTS=<ca.pem>.
//
//   node device_amqp.js amqp|amqpws
//       DEVICE_CONNECTION_STRING: the device's connection string (with `x509=true` for an
//       X.509 device, whose PEM files are DEVICE_CERT and DEVICE_KEY); one with `ModuleId=`
//       opens a ModuleClient instead.
//
// It opens the client and prints {"event": "open"} or {"event": "openError", "error": …},
// then reads one JSON command a line from standard input and prints one JSON line for each:
//   {"cmd": "send", "text": T, "messageId": M, "properties": {k: v}, "contentType": C}
//   {"cmd": "twin"}                       the twin's properties
//   {"cmd": "report", "patch": {…}}       a reported-properties patch
//   {"cmd": "desired"}                    listen to desired patches: each prints {"event": "desired", …}
//   {"cmd": "c2d", "settle": "complete"|"reject"|"abandon"}
//                                         waits for the next C2D message and settles it
//   {"cmd": "method", "name": N, "status": S, "answer": {…}}
//                                         answers calls of method N: each prints {"event": "method", …}
//   {"cmd": "inputs"}                     (a module) attaches its input messages link: each
//                                         input message prints {"event": "input", "input": …, …}
//   {"cmd": "output", "output": O, "text": T, "messageId": M, "properties": {k: v}}
//                                         (a module) sends to its output O
//   {"cmd": "close"}
// Errors print {"error": …} for the command (the process goes on); events arrive unasked.
'use strict';

const fs = require('node:fs');
const readline = require('node:readline');
const { Client, ModuleClient, Message } = require('azure-iot-device');
const { Amqp, AmqpWs } = require('azure-iot-device-amqp');

const { errorJson } = require('./output');

function print(value) {
  process.stdout.write(JSON.stringify(value) + '\n');
}

function settle(call) {
  return new Promise((resolve) => call((err, result) => resolve(err ? { err } : { ok: result })));
}

const transport = process.argv[2] === 'amqpws' ? AmqpWs : Amqp;
const isModule = /(^|;)ModuleId=/i.test(process.env.DEVICE_CONNECTION_STRING);
const client = (isModule ? ModuleClient : Client).fromConnectionString(process.env.DEVICE_CONNECTION_STRING, transport);
if (process.env.DEVICE_CERT) {
  client.setOptions({
    cert: fs.readFileSync(process.env.DEVICE_CERT, 'utf8'),
    key: fs.readFileSync(process.env.DEVICE_KEY, 'utf8'),
  });
}

// C2D messages arrive whenever the hub sends them; `c2d` commands take them in order.
const received = [];
const waiting = [];
client.on('error', (err) => print({ event: 'clientError', error: errorJson(err) }));
client.on('disconnect', (err) => print({ event: 'disconnect', error: err ? errorJson(err) : null }));

function nextMessage() {
  if (received.length) return Promise.resolve(received.shift());
  return new Promise((resolve) => waiting.push(resolve));
}

let twin;
async function getTwin() {
  if (!twin) {
    const got = await settle((cb) => client.getTwin(cb));
    if (got.err) throw got.err;
    twin = got.ok;
  }
  return twin;
}

const commands = {
  async send(c) {
    const message = new Message(c.text);
    if (c.messageId) message.messageId = c.messageId;
    if (c.contentType) message.contentType = c.contentType;
    for (const [k, v] of Object.entries(c.properties || {})) message.properties.add(k, v);
    const sent = await settle((cb) => client.sendEvent(message, cb));
    if (sent.err) throw sent.err;
    return { sent: sent.ok.constructor.name };
  },
  async twin() {
    const t = await getTwin();
    const fresh = await settle((cb) => t.get(cb));
    if (fresh.err) throw fresh.err;
    return { desired: t.properties.desired, reported: t.properties.reported };
  },
  async report(c) {
    const t = await getTwin();
    const done = await settle((cb) => t.properties.reported.update(c.patch, cb));
    if (done.err) throw done.err;
    return { reported: true };
  },
  async desired() {
    const t = await getTwin();
    t.on('properties.desired', (delta) => print({ event: 'desired', delta }));
    return { listening: true };
  },
  async c2d(c) {
    const message = await nextMessage();
    const out = {
      data: message.data.toString(),
      messageId: message.messageId,
      correlationId: message.correlationId,
      properties: Object.fromEntries(message.properties.propertyList.map((p) => [p.key, p.value])),
    };
    const how = c.settle || 'complete';
    const done = await settle((cb) => client[how](message, cb));
    if (done.err) throw done.err;
    out.settled = how;
    return out;
  },
  async method(c) {
    // The transport's enableMethods attaches the method links and tells when they are up;
    // onDeviceMethod then finds them attached (it would attach them in the background).
    const enabled = await settle((cb) => client._transport.enableMethods(cb));
    if (enabled.err) throw enabled.err;
    const on = isModule ? client.onMethod.bind(client) : client.onDeviceMethod.bind(client);
    on(c.name, (request, response) => {
      print({ event: 'method', name: request.methodName, payload: request.payload });
      response.send(c.status, c.answer, (err) => {
        if (err) print({ event: 'methodAnswerError', error: errorJson(err) });
      });
    });
    return { listening: c.name };
  },
  async inputs() {
    const enabled = await settle((cb) => client._transport.enableInputMessages(cb));
    if (enabled.err) throw enabled.err;
    client.on('inputMessage', (input, message) => {
      print({
        event: 'input',
        input,
        data: message.data.toString(),
        messageId: message.messageId,
        contentType: message.contentType,
        properties: Object.fromEntries(message.properties.propertyList.map((p) => [p.key, p.value])),
      });
      client.complete(message, () => {});
    });
    return { listening: true };
  },
  async output(c) {
    const message = new Message(c.text);
    if (c.messageId) message.messageId = c.messageId;
    for (const [k, v] of Object.entries(c.properties || {})) message.properties.add(k, v);
    const sent = await settle((cb) => client.sendOutputEvent(c.output, message, cb));
    if (sent.err) throw sent.err;
    return { sent: sent.ok.constructor.name };
  },
  async close() {
    await settle((cb) => client.close(cb));
    return { closed: true };
  },
};

async function main() {
  const opened = await settle((cb) => client.open(cb));
  if (opened.err) {
    print({ event: 'openError', error: errorJson(opened.err) });
    process.exit(0);
  }
  if (!isModule) {
    client.on('message', (message) => {
      const resolve = waiting.shift();
      if (resolve) resolve(message);
      else received.push(message);
    });
  }
  print({ event: 'open' });
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const c = JSON.parse(line);
    try {
      print({ cmd: c.cmd, ...(await commands[c.cmd](c)) });
    } catch (err) {
      print({ cmd: c.cmd, error: errorJson(err) });
    }
    if (c.cmd === 'close') process.exit(0);
  }
  process.exit(0);
}

main().catch((err) => {
  print({ error: errorJson(err) });
  process.exit(1);
});
