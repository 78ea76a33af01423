#!/usr/bin/env node
// The Event Hubs SDK for JavaScript (`@azure/event-hubs`, rhea underneath) reading the hub's
// Event Hubs-compatible endpoint, driven by test_eventhub.py. The connection string is
// $IRONHUB_EVENTHUB_CONNECTION_STRING (`ironhub info --json`'s eventHubCompatible); trust comes
// from NODE_EXTRA_CA_CERTS=<ca.pem>.
//
//   node eventhubs.js read --partition P --count N [--group G]
//       getEventHubProperties and getPartitionProperties(P), then subscribes to partition P
//       from the earliest event until N events arrived: prints them (body as text,
//       properties, systemProperties, sequenceNumber, offset, enqueuedTimeUtc, partitionKey).
'use strict';

const { parseArgs } = require('node:util');
const { EventHubConsumerClient, earliestEventPosition } = require('@azure/event-hubs');

const { finish, fail } = require('./output');

async function read(args) {
  const client = new EventHubConsumerClient(
    args.group || '$Default',
    process.env.IRONHUB_EVENTHUB_CONNECTION_STRING,
  );
  const hub = await client.getEventHubProperties();
  const partition = await client.getPartitionProperties(args.partition);
  const want = Number(args.count);
  const events = await new Promise((resolve, reject) => {
    const got = [];
    const subscription = client.subscribe(
      args.partition,
      {
        processEvents: async (batch) => {
          got.push(...batch);
          if (got.length >= want) {
            await subscription.close();
            resolve(got);
          }
        },
        processError: async (err) => reject(err),
      },
      { startPosition: earliestEventPosition, maxWaitTimeInSeconds: 1 },
    );
  });
  await client.close();
  return {
    hub: { name: hub.name, partitionIds: hub.partitionIds },
    partition: {
      id: partition.partitionId,
      beginningSequenceNumber: partition.beginningSequenceNumber,
      lastEnqueuedSequenceNumber: partition.lastEnqueuedSequenceNumber,
      lastEnqueuedOffset: partition.lastEnqueuedOffset,
      isEmpty: partition.isEmpty,
    },
    events: events.map((e) => ({
      body: Buffer.isBuffer(e.body) ? e.body.toString() : e.body,
      properties: e.properties,
      systemProperties: e.systemProperties,
      sequenceNumber: e.sequenceNumber,
      offset: e.offset,
      enqueuedTimeUtc: e.enqueuedTimeUtc,
      partitionKey: e.partitionKey,
    })),
  };
}

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    partition: { type: 'string' },
    count: { type: 'string' },
    group: { type: 'string' },
  },
});

({ read })[positionals[0]](values).then(finish, fail);
