"""The client SDK: talks to every node, keeps plaintext at the edge."""
