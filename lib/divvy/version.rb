# frozen_string_literal: true

module Divvy
  # The gem's version.
  VERSION = '2.0.0'
end
