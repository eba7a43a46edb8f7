// The reference consumer, verbatim apart from the require line and the print.
const amqp = require('amqplib/callback_api');
amqp.connect('amqp://localhost', (e0, connection) => { connection.createChannel((e1, channel) => {
  channel.assertQueue('order_events', { durable: false });
  channel.consume('order_events', (msg) => { const event = JSON.parse(msg.content.toString()); console.log('received', JSON.stringify(event)); }, { noAck: true });
}); });
