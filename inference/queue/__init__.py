"""The bounded job queue in front of the GPU worker."""

from inference.queue.jobs import Job, JobQueue, JobState, QueueClosed, QueueFull, UnknownJob

__all__ = ["Job", "JobQueue", "JobState", "QueueClosed", "QueueFull", "UnknownJob"]
