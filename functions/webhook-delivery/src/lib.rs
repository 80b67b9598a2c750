//! Signed webhook delivery from the DeliveryQueue and RetryQueue.
