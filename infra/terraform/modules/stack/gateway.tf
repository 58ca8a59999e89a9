# Application Gateway WAF_v2 in front of the gateway service. The Application Gateway Ingress
# Controller (AKS add-on) owns listeners, pools, settings and rules after creation; Terraform
# creates the gateway with one HTTPS listener placeholder, the TLS policy, the certificate from
# Key Vault (read with the gateway's own identity) and the WAF policy: OWASP 3.2 in Prevention
# mode, two per-client-address rate limits (strict on the operators' login, loose elsewhere) and
# 429 instead of 403 for whatever the WAF blocks.

resource "azurerm_web_application_firewall_policy" "this" {
  name                = "${var.name_prefix}-waf"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags

  policy_settings {
    enabled                     = true
    mode                        = "Prevention"
    request_body_check          = true
    max_request_body_size_in_kb = 1024
    file_upload_limit_in_mb     = 1
  }

  # Rate limits per client address (sliding one-minute window; a blocked client gets the
  # policy's block status, 429 below, until its rate falls under the threshold). Two rules, each
  # counting only what it matches:
  # - RateLimitLogin: /auth/login (the operators' password login, a brute-force target), at
  #   most gateway.login_rate_limit_per_minute (60) a minute per address.
  # - RateLimitPerClientAddr: every other request, at most gateway.rate_limit_per_minute (30000,
  #   500/s) a minute per address: abuse level only. One game server sends thousands of events a
  #   minute from one address and players behind carrier NAT share one; fair use is limited
  #   behind the gateway, per player (RATE_LIMIT_MAX, 100 events/s), where 403 means "blocked by
  #   fairness" in the API contract.
  # The second rule excludes the login path, so a login counts against the first only.
  custom_rules {
    name                 = "RateLimitLogin"
    priority             = 10
    rule_type            = "RateLimitRule"
    action               = "Block"
    rate_limit_duration  = "OneMin"
    rate_limit_threshold = var.gateway.login_rate_limit_per_minute
    group_rate_limit_by  = "ClientAddr"

    match_conditions {
      match_variables {
        variable_name = "RequestUri"
      }
      operator     = "BeginsWith"
      transforms   = ["Lowercase"]
      match_values = [local.waf_login_path]
    }
  }

  custom_rules {
    name                 = "RateLimitPerClientAddr"
    priority             = 20
    rule_type            = "RateLimitRule"
    action               = "Block"
    rate_limit_duration  = "OneMin"
    rate_limit_threshold = var.gateway.rate_limit_per_minute
    group_rate_limit_by  = "ClientAddr"

    # Every request but a login (the conditions of a rule must all match).
    match_conditions {
      match_variables {
        variable_name = "RequestUri"
      }
      operator           = "BeginsWith"
      negation_condition = true
      transforms         = ["Lowercase"]
      match_values       = [local.waf_login_path]
    }
  }

  managed_rules {
    managed_rule_set {
      type    = "OWASP"
      version = "3.2"
    }
  }
}

locals {
  # The operators' login (crates/services/operators/src/sessions.rs), limited by RateLimitLogin.
  waf_login_path = "/auth/login"
}

# What the WAF answers when it blocks (a rate limit or a managed rule): 429 instead of its
# default 403, which the LiveOps API uses for "player blocked by fairness" (a game server must not
# take a WAF limit for a fairness block). azurerm (through 5.2) has no argument for the policy's
# customBlockResponseStatusCode, so azapi sets it on the policy azurerm manages. azurerm replaces
# policySettings whenever policy_settings change, dropping it: any change to the policy
# therefore replaces (re-applies) this update in the same apply.
resource "azapi_update_resource" "waf_block_response" {
  type        = "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies@2024-05-01"
  resource_id = azurerm_web_application_firewall_policy.this.id

  body = {
    properties = {
      policySettings = {
        customBlockResponseStatusCode = 429
        customBlockResponseBody       = base64encode("{\"type\":\"about:blank\",\"title\":\"Too Many Requests\",\"status\":429,\"detail\":\"rate limited or blocked by the web application firewall\"}")
      }
    }
  }

  lifecycle {
    replace_triggered_by = [azurerm_web_application_firewall_policy.this]
  }
}

locals {
  # Names of the parts Terraform creates the gateway with (AGIC adds and replaces its own).
  gateway_parts = {
    frontend_ip  = "public"
    https_port   = "https"
    backend_pool = "bootstrap"
    http_setting = "bootstrap"
    listener     = "https"
    certificate  = "gateway-tls"
  }
}

resource "azurerm_application_gateway" "this" {
  name                              = "${var.name_prefix}-appgw"
  location                          = var.location
  resource_group_name               = azurerm_resource_group.this.name
  zones                             = ["1", "2", "3"]
  firewall_policy_id                = azurerm_web_application_firewall_policy.this.id
  force_firewall_policy_association = true
  tags                              = local.tags

  sku {
    name = "WAF_v2"
    tier = "WAF_v2"
  }

  autoscale_configuration {
    min_capacity = var.gateway.min_capacity
    max_capacity = var.gateway.max_capacity
  }

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.this["appgw"].id]
  }

  # TLS 1.2 and 1.3 only, forward-secret AEAD ciphers only (TLS 1.3 suites are implied).
  ssl_policy {
    policy_type          = "CustomV2"
    min_protocol_version = "TLSv1_2"
    cipher_suites = [
      "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
      "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
      "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
      "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    ]
  }

  gateway_ip_configuration {
    name      = "gateway"
    subnet_id = azurerm_subnet.this["appgw"].id
  }

  frontend_ip_configuration {
    name                 = local.gateway_parts.frontend_ip
    public_ip_address_id = azurerm_public_ip.this["appgw"].id
  }

  frontend_port {
    name = local.gateway_parts.https_port
    port = 443
  }

  ssl_certificate {
    name                = local.gateway_parts.certificate
    key_vault_secret_id = azurerm_key_vault_certificate.gateway.versionless_secret_id
  }

  backend_address_pool {
    name = local.gateway_parts.backend_pool
  }

  backend_http_settings {
    name                  = local.gateway_parts.http_setting
    cookie_based_affinity = "Disabled"
    port                  = 8080
    protocol              = "Http"
    request_timeout       = 30
  }

  http_listener {
    name                           = local.gateway_parts.listener
    frontend_ip_configuration_name = local.gateway_parts.frontend_ip
    frontend_port_name             = local.gateway_parts.https_port
    protocol                       = "Https"
    ssl_certificate_name           = local.gateway_parts.certificate
  }

  request_routing_rule {
    name                       = "bootstrap"
    rule_type                  = "Basic"
    priority                   = 20000
    http_listener_name         = local.gateway_parts.listener
    backend_address_pool_name  = local.gateway_parts.backend_pool
    backend_http_settings_name = local.gateway_parts.http_setting
  }

  # The gateway reads its certificate with its identity as it is created.
  depends_on = [azurerm_role_assignment.secret_readers]

  lifecycle {
    # AGIC rewrites these from the Ingress resources; Terraform must not fight it.
    ignore_changes = [
      backend_address_pool,
      backend_http_settings,
      frontend_port,
      http_listener,
      probe,
      redirect_configuration,
      request_routing_rule,
      ssl_certificate,
      url_path_map,
      rewrite_rule_set,
      tags,
    ]
  }
}

# What the Application Gateway Ingress Controller (AKS add-on) needs: to rewrite the gateway, to
# join its subnet, to read the resource group and, because the gateway has a user-assigned
# identity, to assign that identity whenever it rewrites the gateway.
resource "azurerm_role_assignment" "agic" {
  for_each = {
    gateway          = { scope = azurerm_application_gateway.this.id, role = "Contributor" }
    gateway-subnet   = { scope = azurerm_subnet.this["appgw"].id, role = "Network Contributor" }
    resource-group   = { scope = azurerm_resource_group.this.id, role = "Reader" }
    gateway-identity = { scope = azurerm_user_assigned_identity.this["appgw"].id, role = "Managed Identity Operator" }
  }

  scope                = each.value.scope
  role_definition_name = each.value.role
  principal_id         = azurerm_kubernetes_cluster.this.ingress_application_gateway[0].ingress_application_gateway_identity[0].object_id
  principal_type       = "ServicePrincipal"
}
