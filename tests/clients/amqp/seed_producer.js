// The reference producer, verbatim apart from the require line.
const amqp = require('amqplib/callback_api');
amqp.connect('amqp://localhost', (e0, connection) => { connection.createChannel((e1, channel) => {
  channel.assertQueue('order_events', { durable: false });
  channel.sendToQueue('order_events', Buffer.from(JSON.stringify({ type: 'Order Placed', data: { orderId: 1, item: 'Laptop', price: 1200 } })));
}); });
