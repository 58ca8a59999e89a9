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
  description = "Azure region of the network, e.g. \"westeurope\"."
}

variable "resource_group_name" {
  type        = string
  description = "Resource group that holds the network."
}

variable "address_space" {
  type        = string
  description = "CIDR of the virtual network; the four subnets are carved out of it (needs at least a /16)."

  validation {
    condition     = can(cidrhost(var.address_space, 0)) && tonumber(split("/", var.address_space)[1]) <= 16
    error_message = "address_space must be a CIDR of /16 or larger, e.g. 10.40.0.0/16."
  }
}

variable "admin_ssh_cidr" {
  type        = string
  description = "CIDR allowed to reach the MySQL VM on port 22 (a bastion or VPN range); empty string closes SSH entirely."
  default     = ""

  validation {
    condition     = var.admin_ssh_cidr == "" || (can(cidrhost(var.admin_ssh_cidr, 0)) && var.admin_ssh_cidr != "0.0.0.0/0")
    error_message = "admin_ssh_cidr must be empty or a CIDR narrower than 0.0.0.0/0."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags put on every resource."
  default     = {}
}
