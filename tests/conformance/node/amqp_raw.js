#!/usr/bin/env node
// One device link through the Node SDKs' AMQP layer (`azure-iot-amqp-base`, on rhea), for what
// the device client never does by itself, driven by test_amqp_device.py. Trust comes from
// NODE_EXTRA_CA_CERTS=<ca.pem>.
//
//   node amqp_raw.js --host H --device D --key K --address A [--ttl S] [--renew-after MS]
//                    [--hold MS]
//       Connects to amqps://H, puts a SAS token for H/devices/D signed with K (valid S
//       seconds) on $cbs, attaches a sender link to A and sends one message on it. With
//       --gateway D2 --gateway-key K2, a second device's token is put on the same connection
//       and a message sent on its telemetry link too (`gateway`). With
//       --renew-after, a fresh token is put after MS milliseconds; with --hold, the link is
//       watched for MS milliseconds and a message sent at the end. Prints
//       {"putToken": …, "attach": …, "send": …, "detached": …, "late": …}, each `"ok"` or the
//       error's AMQP condition. With --plain, the connection logs in with SASL PLAIN instead
//       (user `D@sas.{hub}`, the token as password; `putToken` is then "plain"), as the C
//       SDK and some Node and Java paths do.
'use strict';

const { parseArgs } = require('node:util');
const { Amqp, AmqpMessage } = require('azure-iot-amqp-base');
const { SharedAccessSignature, Message } = require('azure-iot-common');

const { finish, fail } = require('./output');

function settle(call) {
  return new Promise((resolve) => call((err, result) => resolve(err ? { err } : { ok: result })));
}

// The AMQP condition of an error: rhea's own error object carries it, the SDK's translated
// errors under `amqpError`.
function condition(err) {
  if (!err) return 'error';
  if (typeof err.condition === 'string') return err.condition;
  const amqpError = err.amqpError || (err.innerError && err.innerError.amqpError);
  if (amqpError && amqpError.condition) return amqpError.condition;
  return err.name || err.message || 'error';
}

function token(host, device, key, ttl) {
  const expiry = Math.floor(Date.now() / 1000) + ttl;
  return SharedAccessSignature.create(`${host}/devices/${device}`, null, key, expiry).toString();
}

async function main() {
  const { values } = parseArgs({
    options: {
      host: { type: 'string' },
      device: { type: 'string' },
      key: { type: 'string' },
      address: { type: 'string' },
      ttl: { type: 'string', default: '3600' },
      'renew-after': { type: 'string' },
      hold: { type: 'string' },
      gateway: { type: 'string' },
      'gateway-key': { type: 'string' },
      plain: { type: 'boolean', default: false },
    },
  });
  const ttl = Number(values.ttl);
  const amqp = new Amqp(true);
  const out = {};
  const config = { uri: `amqps://${values.host}`, userAgentString: 'ironhub-test' };
  const audience = `${values.host}/devices/${values.device}`;
  if (values.plain) {
    // rhea logs in with PLAIN when the connection options carry a user name and password.
    const hubName = values.host.split('.')[0];
    config.policyOverride = {
      username: `${values.device}@sas.${hubName}`,
      password: token(values.host, values.device, values.key, ttl),
    };
  }
  const connected = await settle((cb) => amqp.connect(config, cb));
  if (connected.err) {
    out.connect = condition(connected.err);
    finish(out);
  }
  if (values.plain) {
    out.putToken = 'plain';
  } else {
    const cbs = await settle((cb) => amqp.initializeCBS(cb));
    if (cbs.err) throw cbs.err;
    const put = await settle((cb) => amqp.putToken(audience, token(values.host, values.device, values.key, ttl), cb));
    out.putToken = put.err ? condition(put.err) : 'ok';
  }
  const attached = await settle((cb) => amqp.attachSenderLink(values.address, null, cb));
  if (attached.err) {
    out.attach = condition(attached.err);
    finish(out);
  }
  out.attach = 'ok';
  const link = attached.ok;
  // The link's error surfaces on the link, or (the SDK tears the connection down on it) in
  // the disconnect handler.
  const detached = new Promise((resolve) => {
    link.on('error', (err) => resolve(condition(err)));
    amqp.setDisconnectHandler((err) => resolve(condition(err)));
  });
  const sent = await Promise.race([
    settle((cb) => link.send(AmqpMessage.fromMessage(new Message('raw')), cb)),
    detached.then((c) => ({ err: { name: c } })),
  ]);
  out.send = sent.err ? condition(sent.err) : 'ok';
  if (values.gateway) {
    const other = `${values.host}/devices/${values.gateway}`;
    const put2 = await settle((cb) => amqp.putToken(other, token(values.host, values.gateway, values['gateway-key'], ttl), cb));
    const link2 = put2.err ? put2 : await settle((cb) => amqp.attachSenderLink(`/devices/${values.gateway}/messages/events`, null, cb));
    const sent2 = link2.err ? link2 : await settle((cb) => link2.ok.send(AmqpMessage.fromMessage(new Message('gateway')), cb));
    out.gateway = sent2.err ? condition(sent2.err) : 'ok';
  }
  if (values['renew-after']) {
    setTimeout(() => {
      amqp.putToken(audience, token(values.host, values.device, values.key, 3600), (err) => {
        out.renewed = err ? condition(err) : 'ok';
      });
    }, Number(values['renew-after']));
  }
  if (values.hold) {
    const held = Number(values.hold);
    out.detached = await Promise.race([detached, new Promise((resolve) => setTimeout(() => resolve(null), held))]);
    if (!out.detached) {
      const late = await settle((cb) => link.send(AmqpMessage.fromMessage(new Message('late')), cb));
      out.late = late.err ? condition(late.err) : 'ok';
    }
  }
  finish(out);
}

main().catch(fail);
