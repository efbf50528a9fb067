"""Voice of the customer: surveys, their responses and scores, and closing the loop."""
