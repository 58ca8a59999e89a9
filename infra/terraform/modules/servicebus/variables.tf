variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name, e.g. \"liveops-prod\"."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,20}$", var.name_prefix))
    error_message = "name_prefix must be 3-21 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "location" {
  type        = string
  description = "Azure region of the namespace."
}

variable "resource_group_name" {
  type        = string
  description = "Resource group that holds the namespace."
}

variable "sku" {
  type        = string
  description = "Namespace SKU: Premium in prod (zone-redundant, private endpoint, dedicated capacity); Standard in dev (topics need at least Standard)."
  default     = "Premium"

  validation {
    condition     = contains(["Standard", "Premium"], var.sku)
    error_message = "sku must be Standard or Premium (Basic has no topics)."
  }
}

variable "capacity" {
  type        = number
  description = "Messaging units of a Premium namespace (1, 2, 4, 8 or 16); ignored for Standard."
  default     = 1

  validation {
    condition     = contains([1, 2, 4, 8, 16], var.capacity)
    error_message = "capacity must be 1, 2, 4, 8 or 16."
  }
}

variable "premium_messaging_partitions" {
  type        = number
  description = "Partitions of a Premium namespace (1, 2 or 4; fixed at creation). More than 1 lets the topics be partitioned."
  default     = 1

  validation {
    condition     = contains([1, 2, 4], var.premium_messaging_partitions)
    error_message = "premium_messaging_partitions must be 1, 2 or 4."
  }
}

variable "local_auth_enabled" {
  type        = bool
  description = "Keep SAS (shared access key) authentication: LiveOps reads BUS_CONN, an AMQP connection string of a Send+Listen rule. false = Entra ID only, through the workload identity's data roles."
  default     = true
}

variable "workload_principal_id" {
  type        = string
  description = "Principal ID of the LiveOps workload identity, given Azure Service Bus Data Sender and Receiver."
}

variable "private_endpoint_subnet_id" {
  type        = string
  description = "Subnet of the namespace's private endpoint (Premium only); empty string keeps the public endpoint (dev, Standard)."
  default     = ""
}

variable "private_dns_zone_id" {
  type        = string
  description = "ID of the privatelink.servicebus.windows.net zone; used with private_endpoint_subnet_id."
  default     = ""
}

variable "message_ttl" {
  type        = string
  description = "ISO 8601 time-to-live of a message on the topics; expired messages go to the dead-letter queue."
  default     = "P7D"
}

variable "tags" {
  type        = map(string)
  description = "Tags put on every resource."
  default     = {}
}
