# Port of the Qpid "Message Groups Demonstration" (section 6.8.7 of the seed
# /work/shared/seeds/qpid-message-groups.txt) from qpid.messaging (Python 2) to
# python-qpid-proton's blocking API (Python 3). What changed and why:
#
# - The two interactive questions are answered by the command line
#   (`message_groups.py -a HOST:PORT GROUPING ACK_ALL`, each `y` or `n`), and
#   the answer is printed after the prompt as a terminal would echo it, so the
#   output is the seed's transcript character for character.
# - The queues are configured in broker.toml rather than by qpid.messaging
#   address options: `[queues."test-group-queue"] group_key = "ourGroupID"`
#   (on-ack release, the default, is Qpid's shared-group behaviour).
# - fetch(): each receiver starts with no credit and grants one message of
#   credit per fetch, as qpid.messaging does with its default capacity here,
#   so a consumer never holds a message it has not fetched.
# - acknowledge() is synchronous in qpid.messaging: the call returns once the
#   broker has processed it. The port gets the same with rcv-settle-mode
#   "second": it sends accepted, waits for the broker to settle, then settles.
import optparse

from proton import Delivery, Link, Message
from proton.reactor import LinkOption
from proton.utils import BlockingConnection


class SyncAcknowledge(LinkOption):
    def apply(self, link):
        link.rcv_settle_mode = Link.RCV_SECOND


class Consumer:
    def __init__(self, connection, address):
        self.connection = connection
        self.receiver = connection.create_receiver(address, credit=0, options=SyncAcknowledge())
        self.fetched = []  # (message, delivery) not yet acknowledged

    def fetch(self, timeout):
        message = self.receiver.receive(timeout=timeout)
        delivery = self.receiver.fetcher.unsettled.pop()
        self.fetched.append((message, delivery))
        return message

    def acknowledge(self, message=None):
        acked = [(m, d) for (m, d) in self.fetched if message is None or m is message]
        for _, delivery in acked:
            delivery.update(Delivery.ACCEPTED)
        self.connection.wait(lambda: all(d.remote_state and d.settled for _, d in acked),
                             msg="waiting for the broker to settle acknowledged messages")
        for _, delivery in acked:
            delivery.settle()
        self.fetched = [(m, d) for (m, d) in self.fetched if (m, d) not in acked]


def ask(prompt, answer):
    print(prompt + answer)
    return answer


parser = optparse.OptionParser(usage="usage: %prog [options] GROUPING ACK_ALL")
parser.add_option("-a", "--address", default="localhost:5672",
                  help="broker to connect to (default %default)")
opts, answers = parser.parse_args()


def sendmsg(group, num):
    # send the message to the broker and add it to our in-memory representation of the broker queue
    global memoryqueue
    global tx

    msg = Message(group + num)
    msg.properties = {'ourGroupID': group}

    tx.send(msg)
    memoryqueue.append(group + num)


def pullmsg(consumer):
    # fetch a message from the broker and print it to the console
    global counter
    global memoryqueue

    msg = consumers[consumer - 1].fetch(timeout=1)

    print("\nQueued message: " + memoryqueue[counter])
    print("Consumer " + str(consumer) + " got: " + msg.body)

    counter += 1
    return msg


# Two connections are used to simulate two distinct consumers
connection = BlockingConnection(opts.address)
connection2 = BlockingConnection(opts.address)

try:
    x = ask('Enable message grouping [Y/n]?', answers[0])

    if x == 'N' or x == 'n':

        # Create the queue without message groups
        tx = connection.create_sender("test-nogroup-queue")
        rx1 = Consumer(connection, "test-nogroup-queue")
        rx2 = Consumer(connection2, "test-nogroup-queue")

        print("\nMessage grouping is disabled")
        msggroup = False

    else:

        # Create the queue with message groups enabled
        tx = connection.create_sender("test-group-queue")
        rx1 = Consumer(connection, "test-group-queue")
        rx2 = Consumer(connection2, "test-group-queue")

        print("\nMessage grouping is enabled")
        msggroup = True

    # Put the receivers in an array so we can use a function to fetch messages
    consumers = []
    consumers.append(rx1)
    consumers.append(rx2)

    print("Sending interleaved messages from two different groups to the queue...")

    # We create an in-memory picture of the queue, to see what order the messages are on the broker
    memoryqueue = []

    sendmsg('A', '1')
    sendmsg('B', '1')
    sendmsg('B', '2')
    sendmsg('A', '2')
    sendmsg('B', '3')
    sendmsg('A', '3')

    counter = 0
    pullmsg(1)
    pullmsg(2)

    if msggroup:
        print("\nConsumer 1 now owns message group A. Consumer 2 now owns message group B.")

    msgc1 = pullmsg(1)
    msgc2 = pullmsg(2)

    if msggroup:
        print("\nThe consumers will now acknowledge all the messages, or only the last one.")
        resp = ask('Should they acknowlege all messages? [Y/n]', answers[1])

        if resp == 'N' or resp == 'n':
            print("\nAcknowledging only part of the group. The consumers retain ownership of the group. This is an anti-pattern! See the source code comments for details.")

            rx1.acknowledge(msgc1)
            rx2.acknowledge(msgc2)
            antipattern = True

            # Acknowledging only part of a group is an anti-pattern. Messages are grouped to ensure that a single consumer can deal with the whole group. If this consumer now fails before completing the rest of the group, the unacknowledged messages in the group will be released and redelivered by the broker, but the acknowledged messages in the group are now missing in action!

        else:
            print("\nAcknowledging all fetched messages. The consumers will release ownership of the groups.")
            rx1.acknowledge()
            rx2.acknowledge()
            antipattern = False

        print("\nPulling more messages from the queue:")

    pullmsg(1)
    pullmsg(2)
    if msggroup:
        if antipattern == False:
            print("\nConsumer 1 now owns message group B. Consumer 2 now owns message group A.")
        print("\nSending some more messages to the queue...")

    sendmsg('B', '4')
    sendmsg('B', '5')
    sendmsg('A', '4')
    sendmsg('A', '5')

    pullmsg(1)
    pullmsg(2)
    pullmsg(1)
    pullmsg(2)

finally:
    connection.close()
    connection2.close()
