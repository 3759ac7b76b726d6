"""The OpenAI-compatible server backend (`openai:URL#MODEL`), over HTTP with httpx.

`backend` is the Backend itself; `http` is the client (httpx set up, retries, errors
named for the user), `failures` what can go wrong and how it reads; `sse` reads
Server-Sent Events and cancels a read; `streaming` turns a streamed completion into a
result; `logprobs` asks for and reads echoed prompt log-probabilities; `protocol` builds
requests and reads responses and stream events; `ref` parses the model reference and the
chat envelope sent to the server.
"""
