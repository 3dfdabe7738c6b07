"""The brain: answering one prompt. Who is asking (users), which path it takes (intent),
asking the circuits at once (fanout), one reply from their answers (merge), who Echo is
(identity), making a project (projects), and what the brain asks of the memory."""
