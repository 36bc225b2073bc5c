"""Helpers shared by several test modules (no test module imports another).

`chat`: conversations and sockets through the consumer; `turns`: stored turns and replies
made through the services without a gateway; `processes`: real Daphne and Redis processes.
"""
